"""Web tasks: a generated shop (WebShop) and MiniWoB-style forms on one page engine."""
