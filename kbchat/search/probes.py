"""Probe texts the embedder's variants are measured and compared on (kbchat.search.precision): passages of an
internal knowledge base in the corpus's languages and lengths (a few are long enough to be truncated),
and short questions. Shipped in code so the measurement needs no corpus and no network.
"""

from __future__ import annotations

PASSAGES = [
    # hardware datasheets
    "The A100 80GB PCIe card delivers 1,935 GB/s of memory bandwidth from HBM2e memory and a maximum "
    "thermal design power of 300 W. Multi-Instance GPU partitions one card into up to seven isolated "
    "instances, each with its own memory, cache and compute cores.",
    "NVIDIA T400: 384 CUDA cores, 4 GB GDDR6 on a 64-bit interface, 80 GB/s, three mini DisplayPort 1.4 "
    "outputs, low-profile bracket, 30 W maximum power consumption, active fan cooling.",
    "RTX 6000 Ada Generation: 48 GB GDDR6 with error correction, 18,176 CUDA cores, 568 fourth-generation "
    "Tensor Cores, 142 third-generation RT Cores, four DisplayPort 1.4a outputs, 300 W board power.",
    "Sizing a virtual workstation deployment starts from the users' applications: a CAD designer with "
    "large assemblies needs a 4Q or 8Q profile, while a knowledge worker running office software and "
    "video calls is served by a 1B or 2B profile. Measure frame buffer use with the GPU profiler before "
    "choosing the profile, and leave headroom for peaks. " * 3,
    # LLM serving and training
    "Inference throughput depends on batch size, sequence length and the precision of the weights. "
    "Quantising a 70B model to FP8 halves its memory footprint, which lets the KV cache hold more "
    "concurrent requests on the same GPU.",
    "Tensor parallelism splits each layer's matrices across GPUs and needs fast NVLink between them; "
    "pipeline parallelism assigns whole layers to different GPUs and tolerates slower links but adds "
    "bubbles unless micro-batches keep every stage busy.",
    "Retrieval-augmented generation answers a question from documents the model was not trained on: "
    "passages are embedded, the nearest ones to the question are retrieved, and the language model is "
    "asked to answer only from them, citing the page each fact came from.",
    "A NIM microservice packages an optimised model with its inference engine and exposes an "
    "OpenAI-compatible endpoint; a fine-tuned LoRA adapter can be loaded next to the base model without "
    "rebuilding the container.",
    "Hymba combines attention heads and state space model heads in the same layer, so that the attention "
    "heads recall details precisely while the SSM heads summarise the context efficiently.",
    "Data preprocessing for pre-training removes duplicates with fuzzy hashing, filters documents by "
    "language and quality classifiers, and redacts personal information before tokenisation.",
    # company policy and operations
    "Expense claims must be submitted within 30 days of the purchase with the original receipt attached. "
    "Claims above 500 euros need the approval of the department head before they are reimbursed.",
    "Employees may work remotely up to three days a week after their probation period. Remote work from "
    "another country requires written approval from HR because of tax and insurance rules.",
    "To reset your VPN password, open the self-service portal, choose 'Forgot password', and confirm "
    "the code sent to your registered phone. Accounts lock after five failed attempts for 15 minutes.",
    "Incident severity 1 means a customer-facing outage: page the on-call engineer immediately, open a "
    "bridge call, and post status updates every 30 minutes until the service is restored.",
    "The quarterly security training is mandatory for all staff. It covers phishing, password managers, "
    "handling confidential documents and reporting lost laptops within one hour.",
    "Parental leave is 16 weeks at full pay for the primary caregiver and 6 weeks for the second "
    "caregiver; both can be taken in up to three blocks during the child's first year.",
    # medical / clinic
    "Adults with a fever above 39 °C that lasts more than three days, or with stiffness of the neck, "
    "should see a doctor the same day. Drink plenty of fluids and rest.",
    "Before the blood test, do not eat for eight hours; water is allowed. Bring your insurance card and "
    "the list of medicines you take, including supplements.",
    # a long passage (truncated at the model's 256 word pieces)
    "Chapter 4 describes the data pipeline in detail. " + " ".join(
        f"Step {i}: the loader reads shard {i}, validates its schema, converts timestamps to UTC, and "
        f"writes the cleaned records to partition {i % 7} of the warehouse." for i in range(1, 25)),
    # Chinese (traditional and simplified), Japanese, Korean
    "企業內部知識庫讓員工用自然語言提問，系統從公司的 PDF 文件中找出相關段落，並在回答中標示來源頁碼，方便查核。",
    "分散式訓練常用資料平行與模型平行兩種方式。資料平行把批次切分到多張 GPU 上，每一步結束後同步梯度；"
    "模型平行則把模型本身拆開，適合單卡放不下的大型模型。",
    "推理优化的常见方法包括量化、KV 缓存、连续批处理和投机解码。量化可以把模型权重从 16 位压缩到 8 位或 4 位，"
    "显著降低显存占用。",
    "提示工程指南建议：先说明任务和角色，再给出少量示例，最后明确输出格式。复杂问题可以要求模型逐步推理。",
    "指令对齐通过监督微调和人类反馈强化学习，让大语言模型的回答更符合人类的意图和价值观。",
    "社内のナレッジベースでは、PDF をアップロードすると自動的に索引が作成され、質問に対して出典のページ付きで"
    "回答が表示されます。",
    "経費精算は購入日から30日以内に、領収書の原本を添付して申請してください。",
    "사내 지식 베이스에 PDF를 올리면 자동으로 색인되며, 질문에 대한 답변에는 출처 페이지가 함께 표시됩니다.",
    # short fragments and mixed text
    "Table 3: latency in milliseconds, p50 / p95.",
    "See page 12.",
    "GPU 메모리 대역폭 and 顯存頻寬 compared across three cards.",
    "Contact: it-support@example.com, extension 4242 (Monday to Friday, 8:00–18:00).",
    "The zebra protocol uses port 7777 for all traffic; heartbeats are sent every 30 seconds.",
]

QUESTIONS = [
    "What is the memory bandwidth of the A100 80GB PCIe?",
    "How much power does the T400 draw?",
    "Which vGPU profile does a CAD designer need?",
    "What is the difference between tensor and pipeline parallelism?",
    "How do I reset my VPN password?",
    "How long is parental leave?",
    "When should I see a doctor for a fever?",
    "知識庫如何標示來源頁碼？",
    "量化如何降低显存占用？",
    "経費精算の期限は？",
    "What port does the zebra protocol use?",
    "expense claim approval above 500 euros",
]
