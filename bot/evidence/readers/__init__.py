"""Built-in evidence readers, one module per program family; each module lists its classes in READERS."""
