"""One run, wired: open the edges, gather, plan, render, apply."""
