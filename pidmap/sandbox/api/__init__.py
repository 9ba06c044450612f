"""The API's pure rooms: Kubernetes objects as plain JSON dicts, no I/O, all of it unit-tested.

meta (versions, names, timestamps), errors (``Status`` bodies), admission (Pod Security),
selectors (label and field), pods (defaulting, validation, scheduling), patch (merge and strategic
merge), objects (nodes, namespaces), printers (server-side ``Table``s as kubectl prints them),
protobuf (the metadata of a protobuf body).
"""
