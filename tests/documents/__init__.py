"""kbchat/documents: reading PDFs, office files and scans into passages; highlights."""
