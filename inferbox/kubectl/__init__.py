"""The admin's kubectl: a guard that parses and refuses commands, and answers from the local runtime.

`guard` knows nothing of where the answer comes from, so that a backend running the real `kubectl` can
sit behind the same rules; `local` answers in kubectl's own formats from the local runtime.
"""
