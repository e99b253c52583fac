"""Office files (.docx .pptx .xlsx .odt) to PDF with LibreOffice in headless mode, checked first.

The converted PDF is kept in a cache folder named by the original file's sha256, so a citation opens
it at the page and an unchanged file is not converted again. Each conversion runs with its own
LibreOffice profile folder (-env:UserInstallation), so parallel conversions do not block each other,
and in its own process group, killed whole when the time limit passes.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tempfile
import zipfile
from pathlib import Path

from kbchat.errors import IngestError

# suffix -> (the [Content_Types].xml / mimetype marker of a real file of that kind, its kind in words)
OFFICE_TYPES = {
    ".docx": ("wordprocessingml", "Word document"),
    ".pptx": ("presentationml", "PowerPoint presentation"),
    ".xlsx": ("spreadsheetml", "Excel workbook"),
    ".odt": ("application/vnd.oasis.opendocument.text", "OpenDocument text"),
}
LIBREOFFICE_PACKAGES = "libreoffice-core libreoffice-writer libreoffice-impress libreoffice-calc"
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An encrypted OOXML file is an OLE2 container holding a stream named EncryptedPackage (UTF-16 name).
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")


def check_office(data: bytes, suffix: str, name: str) -> None:
    """Raise IngestError when ``data`` is not a readable file of the kind its suffix names."""
    marker, kind = OFFICE_TYPES[suffix]
    article = "an" if kind[0] in "AEIOU" else "a"
    not_kind = f"not {article} {kind} (the contents do not match the {suffix} name)"
    if not data:
        raise IngestError(name, "empty file (0 bytes)")
    if data.startswith(_OLE2):
        if _ENCRYPTED_PACKAGE in data:
            raise IngestError(name, "password-protected")
        return  # an old binary Office file under a new name: LibreOffice reads it by its contents
    if not data.startswith(b"PK\x03\x04"):
        raise IngestError(name, not_kind)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = set(z.namelist())
            if suffix == ".odt":
                if "META-INF/manifest.xml" in names and b"encryption-data" in z.read("META-INF/manifest.xml"):
                    raise IngestError(name, "password-protected")
                head = z.read("mimetype")[:100] if "mimetype" in names else b""
            else:
                head = z.read("[Content_Types].xml") if "[Content_Types].xml" in names else b""
    except IngestError:
        raise
    except (zipfile.BadZipFile, OSError, KeyError, RuntimeError, ValueError) as exc:
        raise IngestError(name, f"damaged {kind}") from exc
    if marker.encode() not in head:
        raise IngestError(name, not_kind)


def find_soffice(command: str = "soffice") -> str | None:
    """The LibreOffice binary: ``command`` on PATH (or a path), else None."""
    found = shutil.which(command)
    if found is None and command == "soffice":
        found = shutil.which("libreoffice")
    return found


def convert_to_pdf(
    path,
    doc_hash: str,
    cache_dir,
    *,
    name: str | None = None,
    timeout: float = 120.0,
    command: str = "soffice",
) -> Path:
    """The PDF LibreOffice makes of ``path``, cached as <cache_dir>/<doc_hash>.pdf.

    Raises IngestError: LibreOffice missing, the time limit passed, or no PDF came out.
    """
    path = Path(path)
    name = name or path.name
    cache_dir = Path(cache_dir)
    target = cache_dir / f"{doc_hash}.pdf"
    if target.is_file() and target.stat().st_size > 0:
        return target
    soffice = find_soffice(command)
    if soffice is None:
        raise IngestError(name, f"LibreOffice is not installed, needed for {path.suffix} files "
                                f"(apt-get install {LIBREOFFICE_PACKAGES})")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kbchat-office-"))
    try:
        src = work / f"input{path.suffix.lower()}"  # a plain name: LibreOffice names its output after it
        shutil.copyfile(path, src)
        out_dir = work / "out"
        profile = (work / "profile").as_uri()
        cmd = [soffice, f"-env:UserInstallation={profile}", "--headless", "--invisible", "--norestore",
               "--nolockcheck", "--nodefault", "--nologo", "--convert-to", "pdf", "--outdir", str(out_dir),
               str(src)]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, cwd=work)
        try:
            _out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            reason = f"conversion to PDF took longer than {timeout:g} s (LibreOffice stopped)"
            raise IngestError(name, reason) from None
        finally:
            _kill_group(proc)  # LibreOffice helpers left behind in the group
        produced = out_dir / "input.pdf"
        if not produced.is_file() or produced.stat().st_size == 0:
            detail = " ".join(err.decode("utf-8", "replace").split())[:160]
            reason = "LibreOffice could not convert it to PDF" + (f" ({detail})" if detail else "")
            raise IngestError(name, reason)
        tmp = cache_dir / f".{doc_hash}.{os.getpid()}.tmp"
        shutil.move(str(produced), tmp)
        os.replace(tmp, target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
