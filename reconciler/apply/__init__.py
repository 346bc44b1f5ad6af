"""Applying a plan: the executor and the lead senders, one handler per op."""
