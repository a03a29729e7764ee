"""A stand-in for the parts of slime the adapter touches (slime is not on PyPI).

Attribute names and the status enum follow slime's `slime/utils/types.py` at commit
624b824a898ab0ec1fcb4d373004c7f3852bf515 (THUDM/slime, 2026-08-21). Used only when the real
slime cannot be imported.
"""
