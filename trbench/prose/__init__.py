"""trbench's English: counts with the right plural, lists joined as a sentence joins them, factors as
measured. Every layer writes its messages with it (the CLI's lines, spec errors, the report)."""

from trbench.prose.english import count, fold, join, noun, verb

__all__ = ["count", "fold", "join", "noun", "verb"]
