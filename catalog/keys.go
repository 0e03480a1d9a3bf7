package catalog

// StalwartKeys returns the key types the Stalwart seed documents (its "Key
// Types" list: accountId, remoteIp, elapsed, ...), in the seed's order, each
// with the seed's description. The slice must not be modified.
func StalwartKeys() []Field { return stalwartKeys }
