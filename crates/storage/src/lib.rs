//! pouw-storage: the embedded, crash-safe database of a node.
