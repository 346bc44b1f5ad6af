"""Pure lead planning: the streaming merge and batching."""
