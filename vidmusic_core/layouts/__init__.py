"""Built-in sequence layouts: ``prefix``, ``aligned`` (prefix.py) and ``cross`` (cross.py)."""
