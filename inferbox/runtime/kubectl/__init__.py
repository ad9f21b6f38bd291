"""The admin's kubectl, whichever backend answers it.

`guard` parses a command and refuses anything that is not a plain read. It knows nothing of where the
answer comes from, so that the local runtime's answers (`inferbox.runtime.local.kubectl`) and a backend
running the real `kubectl` binary sit behind the same rules; nothing here imports a backend.
"""
