"""kbchat/sharing: shared Q&A, review, sheets and exports."""
