"""Evaluation: runs, run folders, metrics, reports, rescoring, the Ray executor, exports."""
