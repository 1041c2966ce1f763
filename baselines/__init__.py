"""Pruning methods, one file each. Drop a file here that calls `@register_method` to add one."""
