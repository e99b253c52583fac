"""Generated 'scanned' PDFs (text rendered to an image, no text layer) and Office files for the OCR,
Office and highlight tests and bench/ocr.py. Everything is made in the caller's folder."""

from __future__ import annotations

from pathlib import Path

# Two pages of sentences per language; PyMuPDF's built-in fonts render them (CJK: its CJK fonts).
SCRIPTS = {
    "en": ("helv", [
        "The quarterly maintenance report covers the cooling system of the north data hall. "
        "Technicians replaced two pump seals on 14 March and measured a flow rate of 220 litres per minute.",
        "The backup generator was tested for forty minutes under full load without faults. "
        "The budget request of 18,500 euros must be approved by the facilities manager "
        "before the end of April.",
    ]),
    "zh-TW": ("china-t", [
        "本季維護報告涵蓋北側資料機房的冷卻系統。技術人員於三月十四日更換了兩個幫浦密封圈，並量測到每分鐘二百二十公升的流量。",
        "備用發電機在滿載狀態下測試了四十分鐘，沒有發生任何故障。一萬八千五百歐元的預算申請必須在四月底前由設施經理核准。",
    ]),
    "zh-CN": ("china-s", [
        "本季度维护报告涵盖北侧数据机房的冷却系统。技术人员于三月十四日更换了两个水泵密封圈，并测得每分钟二百二十升的流量。",
        "备用发电机在满载状态下测试了四十分钟，没有发生任何故障。一万八千五百欧元的预算申请必须在四月底前由设施经理批准。",
    ]),
    "ja": ("japan", [
        "今四半期の保守報告書は、北側データホールの冷却システムを対象としています。技術者は三月十四日にポンプのシール二個を交換しました。",
        "予備発電機は全負荷で四十分間試験され、故障は発生しませんでした。予算申請は四月末までに施設管理者の承認が必要です。",
    ]),
    "ko": ("korea", [
        "이번 분기 유지보수 보고서는 북쪽 데이터 홀의 냉각 시스템을 다룹니다. 기술자들은 3월 14일에 펌프 씰 두 개를 교체했습니다.",
        "예비 발전기는 전부하 상태에서 40분 동안 시험되었으며 고장은 없었습니다. 예산 요청은 4월 말까지 승인을 받아야 합니다.",
    ]),
}


def _text_page(doc, text: str, fontname: str, fontsize: float = 12):
    import pymupdf

    page = doc.new_page()
    page.insert_textbox(pymupdf.Rect(60, 60, page.rect.width - 60, page.rect.height - 60), text,
                        fontsize=fontsize, fontname=fontname)
    return page


def scanned_pdf(path: Path, pages: list[tuple[str, str]], *, dpi: int = 200,
                scanned: list[bool] | None = None) -> Path:
    """A PDF of ``pages`` ((text, fontname) each); page i is an image of its text (no text layer)
    unless ``scanned[i]`` is False, then a normal text page."""
    import pymupdf

    src = pymupdf.open()
    for text, font in pages:
        _text_page(src, text, font)
    out = pymupdf.open()
    for i, p in enumerate(src):
        if scanned is not None and not scanned[i]:
            out.insert_pdf(src, from_page=i, to_page=i)
            continue
        pix = p.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        q = out.new_page(width=p.rect.width, height=p.rect.height)
        q.insert_image(q.rect, stream=pix.tobytes("png"))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(str(path), garbage=3, deflate=True)
    return path


def scanned_language_pdf(path: Path, lang: str, *, copies: int = 1, dpi: int = 200) -> Path:
    """A scanned PDF of SCRIPTS[lang]'s two pages (repeated ``copies`` times)."""
    font, texts = SCRIPTS[lang]
    return scanned_pdf(path, [(t, font) for t in texts] * copies, dpi=dpi)


def docx(path: Path, pages: list[str]) -> Path:
    """A Word document with one paragraph per page, separated by page breaks (python-docx)."""
    from docx import Document
    from docx.enum.text import WD_BREAK

    doc = Document()
    for i, text in enumerate(pages):
        para = doc.add_paragraph(text)
        if i < len(pages) - 1:
            para.add_run().add_break(WD_BREAK.PAGE)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(str(path))
    return path


def pptx(path: Path, slides: list[tuple[str, str]]) -> Path:
    """A presentation with one (title, body) slide each (python-pptx)."""
    from pptx import Presentation

    prs = Presentation()
    for title, body in slides:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    path.parent.mkdir(parents=True, exist_ok=True)
    prs.save(str(path))
    return path


def xlsx(path: Path, rows: list[list[str]]) -> Path:
    """A one-sheet workbook (openpyxl, a kbchat dependency)."""
    from openpyxl import Workbook

    wb = Workbook()
    for row in rows:
        wb.active.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(str(path))
    return path


def encrypted_ooxml(path: Path) -> Path:
    """The shape of a password-protected .docx: an OLE2 compound file whose directory names an
    EncryptedPackage stream (as Word and LibreOffice write them). Synthetic: header + directory entry."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    entry = "EncryptedPackage".encode("utf-16-le").ljust(64, b"\x00") + b"\x22\x00\x02" + b"\x00" * 61
    info = "EncryptionInfo".encode("utf-16-le").ljust(64, b"\x00") + b"\x1e\x00\x02" + b"\x00" * 61
    path.write_bytes(header + entry + info + b"\x00" * 2048)
    return path
