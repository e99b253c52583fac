"""Tests of kbchat.finetune and `kbchat finetune`."""
