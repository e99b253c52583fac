"""The app's own user-facing lines in each UI language (Chainlit translates only its own UI)."""

from __future__ import annotations

from kbchat.documents.passages import row_of
from kbchat.personas import resolve_language

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "admin_only": "Only administrators can see everybody's chats.",
        "no_threads": "No chats stored yet.",
        "threads_header": "**Recent chats of all users** ({n}, newest first; each opens read-only):",
        "indexing": "Indexing **{name}**…",
        "reading": "Indexing **{name}**: {done} / {total} pages read",
        "reading_ocr": "Indexing **{name}**: page {page} of {total} (OCR)",
        "scanned": "scanned",
        "embedding": "Indexing **{name}**: {done} / {total} passages embedded",
        "indexed": "Indexed **{name}**: {pages} pages, {passages} passages in {secs:.1f} s. Ask away.",
        "unchanged": "**{name}** is already indexed in this chat.",
        "duplicate": "**{name}** has the same content as **{other}**, already indexed.",
        "not_indexed": "**{name}** was not indexed: {reason}",
        "only_pdf": "only PDF files can be added.",
        "only_supported": "only PDF, Office (.docx .pptx .xlsx .odt), Markdown and text files can be added.",
        "too_many": "Too many files: at most {max} per message; only the first {max} were indexed, {ignored} ignored.",
        "empty": "Please type a question.",
        "truncated": "Your question has {n:,} characters; only the first {max:,} are used.",
        "cited": "Cited sources",
        "found": "Passages found",
        "others": "Other passages retrieved",
        "page": "page",
        "printed": "printed",
        "llm_failed": "⚠️ {error} Showing the best passages instead (search-only answer).",
        "llm_cut": "⚠️ {error} The answer above may be incomplete.",
        "no_hits": "_No passages matched: upload a PDF or add files to the knowledge base._",
        "syncing": "_The shared knowledge base is still being indexed; results may be incomplete._",
        "search_failed": "Search failed: {error}",
        "share": "Share this Q&A",
        "shared": "Shared ✓",
        "undo": "Undo",
        "share_note": "Sharing stores this question, the answer and its cited passages in the organisation's "
                      "Q&A collection, which administrators may export to train a model. Nothing else from "
                      "this chat is stored. Undo removes it.",
        "share_gone": "This answer can no longer be shared (the chat was restarted).",
        # knowledge bases (/kb, admins)
        "kb_admin_only": "Only administrators can manage knowledge bases.",
        "kb_header": "**Knowledge bases** ({n}):",
        "kb_line": "- **{base}** — {docs} documents, {passages} passages.",
        "kb_table": "| # | File | Pages | Passages | Added by | When |",
        "kb_usage": "`/kb` lists the bases · `/kb NAME` its documents · `/kb create NAME description` · "
                    "`/kb add NAME` with files attached · `/kb remove NAME FILE`. Under a file you upload, "
                    "the *Add to knowledge base* buttons add it to a base.",
        "kb_docs_header": "**{base}**: {n} documents, {passages} passages.",
        "kb_no_docs": "Knowledge base **{base}** has no documents yet.",
        "kb_indexing": "Adding **{name}** to knowledge base **{base}**…",
        "kb_added": "Added **{name}** to knowledge base **{base}**: {pages} pages, {passages} passages in {secs:.1f} s.",
        "kb_replaced": "Replaced **{name}** in knowledge base **{base}** by the new version: {pages} pages, "
                       "{passages} passages in {secs:.1f} s.",
        "kb_unchanged": "**{name}** is already in knowledge base **{base}** (unchanged).",
        "kb_duplicate": "**{name}** has the same content as **{other}**, already in knowledge base **{base}**.",
        "kb_not_added": "**{name}** was not added to knowledge base **{base}**: {reason}",
        "kb_removed": "Removed **{name}** ({passages} passages) from knowledge base **{base}**.",
        "kb_not_removed": "Not removed: {reason}",
        "kb_remove": "Remove {i}: {name}",
        "kb_created": "Created knowledge base **{base}** ({folder}). Bind a persona to it with `knowledge: [{base}]` "
                      "in its YAML file and restart the app.",
        "kb_add_to": "Add to knowledge base: {base}",
        "kb_upload_gone": "That file is not one of this chat's uploads.",
    },
    "zh-TW": {
        "admin_only": "只有管理員可以查看所有人的對話。",
        "no_threads": "尚無任何對話紀錄。",
        "threads_header": "**所有使用者的最近對話**（{n} 則，最新在前；以唯讀方式開啟）：",
        "indexing": "正在建立索引：**{name}**…",
        "reading": "正在建立索引：**{name}**：已讀取 {done} / {total} 頁",
        "reading_ocr": "正在建立索引：**{name}**：第 {page} / {total} 頁（OCR 文字辨識）",
        "scanned": "掃描",
        "embedding": "正在建立索引：**{name}**：已處理 {done} / {total} 個段落",
        "indexed": "已完成 **{name}** 的索引：{pages} 頁、{passages} 個段落，耗時 {secs:.1f} 秒。請開始提問。",
        "unchanged": "**{name}** 已在此對話中建立索引。",
        "duplicate": "**{name}** 的內容與已建立索引的 **{other}** 相同。",
        "not_indexed": "**{name}** 未建立索引：{reason}",
        "only_pdf": "只能加入 PDF 檔案。",
        "only_supported": "只能加入 PDF、Office（.docx .pptx .xlsx .odt）、Markdown 與純文字檔案。",
        "too_many": "檔案過多：每則訊息最多 {max} 個，只處理了前 {max} 個，略過 {ignored} 個。",
        "empty": "請輸入問題。",
        "truncated": "您的問題有 {n:,} 個字元，只使用前 {max:,} 個。",
        "cited": "引用來源",
        "found": "找到的段落",
        "others": "其他檢索到的段落",
        "page": "第",
        "printed": "印刷頁碼",
        "llm_failed": "⚠️ {error} 以下改為列出最相關的段落（僅搜尋結果）。",
        "llm_cut": "⚠️ {error} 上方的回答可能不完整。",
        "no_hits": "_沒有符合的段落：請上傳 PDF 或將檔案加入知識庫。_",
        "syncing": "_共用知識庫仍在建立索引，結果可能不完整。_",
        "search_failed": "搜尋失敗：{error}",
        "share": "分享此問答",
        "shared": "已分享 ✓",
        "undo": "復原",
        "share_note": "分享會將這個問題、回答及其引用段落存入組織的問答集，管理者可能匯出用於訓練模型。"
                      "此對話的其他內容不會被儲存。按「復原」即可移除。",
        "share_gone": "此回答已無法分享（對話已重新啟動）。",
        # knowledge bases (/kb, admins)
        "kb_admin_only": "只有管理員可以管理知識庫。",
        "kb_header": "**知識庫**（{n} 個）：",
        "kb_line": "- **{base}** — {docs} 份文件、{passages} 個段落。",
        "kb_table": "| # | 檔案 | 頁數 | 段落 | 加入者 | 時間 |",
        "kb_usage": "`/kb` 列出知識庫 · `/kb 名稱` 列出其文件 · `/kb create 名稱 說明` · 附上檔案並輸入 `/kb add 名稱` · "
                    "`/kb remove 名稱 檔案`。您上傳的檔案下方的「加入知識庫」按鈕可將它加入知識庫。",
        "kb_docs_header": "**{base}**：{n} 份文件、{passages} 個段落。",
        "kb_no_docs": "知識庫 **{base}** 尚無文件。",
        "kb_indexing": "正在將 **{name}** 加入知識庫 **{base}**…",
        "kb_added": "已將 **{name}** 加入知識庫 **{base}**：{pages} 頁、{passages} 個段落，耗時 {secs:.1f} 秒。",
        "kb_replaced": "已以新版本取代知識庫 **{base}** 中的 **{name}**：{pages} 頁、{passages} 個段落，耗時 {secs:.1f} 秒。",
        "kb_unchanged": "**{name}** 已在知識庫 **{base}** 中（未變更）。",
        "kb_duplicate": "**{name}** 的內容與知識庫 **{base}** 中已有的 **{other}** 相同。",
        "kb_not_added": "**{name}** 未加入知識庫 **{base}**：{reason}",
        "kb_removed": "已從知識庫 **{base}** 移除 **{name}**（{passages} 個段落）。",
        "kb_not_removed": "未移除：{reason}",
        "kb_remove": "移除 {i}：{name}",
        "kb_created": "已建立知識庫 **{base}**（{folder}）。在角色的 YAML 檔加入 `knowledge: [{base}]` 並重新啟動應用程式即可使用。",
        "kb_add_to": "加入知識庫：{base}",
        "kb_upload_gone": "這個檔案不是此對話上傳的檔案。",
    },
    "zh-CN": {
        "admin_only": "只有管理员可以查看所有人的对话。",
        "no_threads": "尚无任何对话记录。",
        "threads_header": "**所有用户的最近对话**（{n} 条，最新在前；以只读方式打开）：",
        "indexing": "正在建立索引：**{name}**…",
        "reading": "正在建立索引：**{name}**：已读取 {done} / {total} 页",
        "reading_ocr": "正在建立索引：**{name}**：第 {page} / {total} 页（OCR 文字识别）",
        "scanned": "扫描",
        "embedding": "正在建立索引：**{name}**：已处理 {done} / {total} 个段落",
        "indexed": "已完成 **{name}** 的索引：{pages} 页、{passages} 个段落，耗时 {secs:.1f} 秒。请开始提问。",
        "unchanged": "**{name}** 已在此对话中建立索引。",
        "duplicate": "**{name}** 的内容与已建立索引的 **{other}** 相同。",
        "not_indexed": "**{name}** 未建立索引：{reason}",
        "only_pdf": "只能添加 PDF 文件。",
        "only_supported": "只能添加 PDF、Office（.docx .pptx .xlsx .odt）、Markdown 和纯文本文件。",
        "too_many": "文件过多：每条消息最多 {max} 个，只处理了前 {max} 个，忽略 {ignored} 个。",
        "empty": "请输入问题。",
        "truncated": "您的问题有 {n:,} 个字符，只使用前 {max:,} 个。",
        "cited": "引用来源",
        "found": "找到的段落",
        "others": "其他检索到的段落",
        "page": "第",
        "printed": "印刷页码",
        "llm_failed": "⚠️ {error} 以下改为列出最相关的段落（仅搜索结果）。",
        "llm_cut": "⚠️ {error} 上面的回答可能不完整。",
        "no_hits": "_没有匹配的段落：请上传 PDF 或将文件加入知识库。_",
        "syncing": "_共享知识库仍在建立索引，结果可能不完整。_",
        "search_failed": "搜索失败：{error}",
        "share": "分享此问答",
        "shared": "已分享 ✓",
        "undo": "撤销",
        "share_note": "分享会将这个问题、回答及其引用段落存入组织的问答集，管理员可能导出用于训练模型。"
                      "此对话的其他内容不会被保存。点击“撤销”即可移除。",
        "share_gone": "此回答已无法分享（对话已重新启动）。",
        "kb_admin_only": "只有管理员可以管理知识库。",
        "kb_add_to": "加入知识库：{base}",
    },
    "ja": {
        "admin_only": "全員のチャットを見られるのは管理者だけです。",
        "no_threads": "保存されたチャットはまだありません。",
        "threads_header": "**全ユーザーの最近のチャット**（{n} 件、新しい順。読み取り専用で開きます）:",
        "indexing": "**{name}** を索引中…",
        "reading": "**{name}** を索引中：{done} / {total} ページ読み込み済み",
        "reading_ocr": "**{name}** を索引中：{page} / {total} ページ（OCR）",
        "scanned": "スキャン",
        "embedding": "**{name}** を索引中：{done} / {total} 段落を処理済み",
        "indexed": "**{name}** の索引を作成しました：{pages} ページ、{passages} 段落、{secs:.1f} 秒。質問をどうぞ。",
        "unchanged": "**{name}** はこのチャットで索引済みです。",
        "duplicate": "**{name}** は索引済みの **{other}** と同じ内容です。",
        "not_indexed": "**{name}** は索引できませんでした：{reason}",
        "only_pdf": "追加できるのは PDF ファイルのみです。",
        "only_supported": "追加できるのは PDF、Office（.docx .pptx .xlsx .odt）、Markdown、テキストファイルのみです。",
        "too_many": "ファイルが多すぎます：1 メッセージあたり最大 {max} 件です。最初の {max} 件を処理し、{ignored} 件を無視しました。",
        "empty": "質問を入力してください。",
        "truncated": "質問は {n:,} 文字あります。最初の {max:,} 文字のみ使用します。",
        "cited": "引用元",
        "found": "見つかった段落",
        "others": "その他の検索結果",
        "page": "ページ",
        "printed": "印刷ページ",
        "llm_failed": "⚠️ {error} 代わりに関連する段落を表示します（検索のみの回答）。",
        "llm_cut": "⚠️ {error} 上の回答は不完全な可能性があります。",
        "no_hits": "_一致する段落がありません。PDF をアップロードするか、ナレッジベースにファイルを追加してください。_",
        "syncing": "_共有ナレッジベースは索引作成中です。結果が不完全な場合があります。_",
        "search_failed": "検索に失敗しました：{error}",
        "share": "この Q&A を共有",
        "shared": "共有済み ✓",
        "undo": "元に戻す",
        "share_note": "共有すると、この質問と回答、引用した段落が組織の Q&A 集に保存され、管理者がモデルの学習用に"
                      "書き出すことがあります。このチャットのほかの内容は保存されません。「元に戻す」で削除できます。",
        "share_gone": "この回答は共有できなくなりました（チャットが再起動されました）。",
        "kb_admin_only": "ナレッジベースを管理できるのは管理者だけです。",
        "kb_add_to": "ナレッジベースに追加：{base}",
    },
    "ko": {
        "admin_only": "모든 사용자의 대화는 관리자만 볼 수 있습니다.",
        "no_threads": "저장된 대화가 아직 없습니다.",
        "threads_header": "**모든 사용자의 최근 대화** ({n}개, 최신순, 읽기 전용으로 열림):",
        "indexing": "**{name}** 색인 중…",
        "reading": "**{name}** 색인 중: {done} / {total} 페이지 읽음",
        "reading_ocr": "**{name}** 색인 중: {page} / {total} 페이지 (OCR)",
        "scanned": "스캔",
        "embedding": "**{name}** 색인 중: {done} / {total} 단락 처리됨",
        "indexed": "**{name}** 색인 완료: {pages}페이지, {passages}개 단락, {secs:.1f}초. 질문하세요.",
        "unchanged": "**{name}**은(는) 이 대화에서 이미 색인되었습니다.",
        "duplicate": "**{name}**은(는) 이미 색인된 **{other}**와(과) 내용이 같습니다.",
        "not_indexed": "**{name}**을(를) 색인하지 못했습니다: {reason}",
        "only_pdf": "PDF 파일만 추가할 수 있습니다.",
        "only_supported": "PDF, Office(.docx .pptx .xlsx .odt), Markdown, 텍스트 파일만 추가할 수 있습니다.",
        "too_many": "파일이 너무 많습니다: 메시지당 최대 {max}개입니다. 처음 {max}개를 처리하고 {ignored}개는 무시했습니다.",
        "empty": "질문을 입력하세요.",
        "truncated": "질문이 {n:,}자입니다. 처음 {max:,}자만 사용합니다.",
        "cited": "인용 출처",
        "found": "찾은 단락",
        "others": "그 밖에 검색된 단락",
        "page": "페이지",
        "printed": "인쇄 페이지",
        "llm_failed": "⚠️ {error} 대신 가장 관련 있는 단락을 보여 드립니다(검색 전용 답변).",
        "llm_cut": "⚠️ {error} 위의 답변은 불완전할 수 있습니다.",
        "no_hits": "_일치하는 단락이 없습니다. PDF를 업로드하거나 지식 베이스에 파일을 추가하세요._",
        "syncing": "_공유 지식 베이스를 아직 색인하는 중입니다. 결과가 불완전할 수 있습니다._",
        "search_failed": "검색 실패: {error}",
        "share": "이 Q&A 공유",
        "shared": "공유됨 ✓",
        "undo": "실행 취소",
        "share_note": "공유하면 이 질문과 답변, 인용된 단락이 조직의 Q&A 모음에 저장되며, 관리자가 모델 학습용으로 "
                      "내보낼 수 있습니다. 이 대화의 다른 내용은 저장되지 않습니다. 실행 취소로 삭제할 수 있습니다.",
        "share_gone": "이 답변은 더 이상 공유할 수 없습니다(대화가 다시 시작됨).",
        "kb_admin_only": "지식 베이스는 관리자만 관리할 수 있습니다.",
        "kb_add_to": "지식 베이스에 추가: {base}",
    },
}


def t(lang: str | None, key: str, **kw) -> str:
    """The line ``key`` in the best available language for ``lang`` (falls back to English)."""
    table = MESSAGES[resolve_language(lang, MESSAGES)]
    return table.get(key, MESSAGES["en"][key]).format(**kw)


def page_ref(lang: str | None, page: int, *, scanned: bool = False) -> str:
    """'page 3' / '第 3 頁' / '3 ページ' in the UI language; with ``scanned`` (an OCR'd passage)
    'page 3, scanned' / '第 3 頁（掃描）' / '3 ページ（スキャン）'."""
    code = resolve_language(lang, MESSAGES)
    if code == "zh-TW":
        ref = f"第 {page} 頁"
    elif code == "zh-CN":
        ref = f"第 {page} 页"
    elif code == "ja":
        ref = f"{page} ページ"
    elif code == "ko":
        ref = f"{page}페이지"
    else:
        ref = f"page {page}"
    if not scanned:
        return ref
    word = MESSAGES[code]["scanned"]
    return f"{ref}, {word}" if code == "en" else (f"{ref} ({word})" if code == "ko" else f"{ref}（{word}）")


_ROW_REF = {"en": "row {n}", "zh-TW": "第 {n} 列", "zh-CN": "第 {n} 行", "ja": "{n} 行目", "ko": "{n}행"}


def place_ref(lang: str | None, page: int, page_label: str | None = None, *, scanned: bool = False) -> str:
    """Where a passage is: 'row 3' for a row of an imported QA sheet (kbchat.sharing.sheets), else
    'page 3' (with ', scanned' and the printed label '(printed iv)' when there is one)."""
    row = row_of(page, page_label)
    if row is not None:
        return _ROW_REF[resolve_language(lang, MESSAGES)].format(n=row)
    label = f" ({t(lang, 'printed')} {page_label})" if page_label else ""
    return page_ref(lang, page, scanned=scanned) + label
