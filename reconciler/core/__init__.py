"""The pure core: plain data, the planner and the lead merge. No SQL, HTTP, logging or clock."""
