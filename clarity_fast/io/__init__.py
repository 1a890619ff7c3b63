"""Reading and writing volumes and point lists."""
