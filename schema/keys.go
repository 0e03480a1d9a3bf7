package schema

import "sort"

// Key is a field key mailtel knows, with the Kind its values have.
//
// The JSON adapters use the Kind to type a value (a remoteIp string becomes
// an IP, an elapsed number a Duration), but only when the conversion is
// lossless; otherwise the value keeps the kind its JSON token has. A value
// of a known key may therefore have another kind than Key.Kind, and
// consumers must check Value.Kind.
//
// Duration units are a property of the wire format, not of the key: Stalwart
// sends durations as integer milliseconds, Dovecot as integer microseconds.
// A list value of a known key holds elements of the key's Kind.
type Key struct {
	// Name is the key as it appears in events ("remoteIp", "remote_ip").
	Name string
	// Kind is the kind of the key's values.
	Kind Kind
	// Description says what the key holds.
	Description string
}

// keyTable lists every known key: the key types of the Stalwart seed (its
// "Key Types" list), the keys real Stalwart servers send besides them, the
// field names of the Dovecot seed and the envelope keys the Dovecot adapter
// keeps as fields. Names must be unique.
var keyTable = []Key{
	// Stalwart: the seed's key types.
	{"accountId", KindUint, "Unique identifier for an account"},
	{"attempt", KindUint, "Number of attempts made for an operation"},
	{"blobId", KindString, "Unique identifier for a binary large object (BLOB)"},
	{"causedBy", KindEvent, "Reason or cause of an event or error"},
	{"changeId", KindUint, "Identifier for a specific change or modification"},
	{"code", KindUint, "Error code or status code"},
	{"collection", KindString, "Name or identifier of a data collection"},
	{"contents", KindString, "Contents or payload of a message or object"},
	{"date", KindTime, "Date of an event or operation"},
	{"details", KindString, "Additional details or information about an event"},
	{"dkimFail", KindUint, "Indicator of a failed DKIM (DomainKeys Identified Mail) check"},
	{"dkimNone", KindUint, "Indicator of no DKIM signature present"},
	{"dkimPass", KindUint, "Indicator of a passed DKIM check"},
	{"dmarcNone", KindUint, "Indicator of no DMARC (Domain-based Message Authentication, Reporting & Conformance) policy"},
	{"dmarcPass", KindUint, "Indicator of a passed DMARC check"},
	{"dmarcQuarantine", KindUint, "Indicator of DMARC quarantine policy"},
	{"dmarcReject", KindUint, "Indicator of DMARC reject policy"},
	{"documentId", KindUint, "Unique identifier for a document"},
	{"domain", KindString, "Domain name associated with an event or entity"},
	{"due", KindTime, "Due date or deadline"},
	{"elapsed", KindDuration, "Elapsed time since a specific point"},
	{"expected", KindString, "Expected value or outcome"},
	{"expires", KindTime, "Expiration date or time"},
	{"from", KindString, "Source or sender of a message or action"},
	{"hamLearns", KindUint, "Number of ham (non-spam) messages learned"},
	{"hostname", KindString, "Name of a host or server"},
	{"id", KindString, "Generic identifier"},
	{"interval", KindDuration, "Time interval between events or operations"},
	{"key", KindString, "Key value in a key-value pair"},
	{"limit", KindUint, "Upper or lower bound of a value or operation"},
	{"listenerId", KindString, "Identifier for a listener process"},
	{"localIp", KindIP, "Local IP address"},
	{"localPort", KindUint, "Local port number"},
	{"mailboxId", KindUint, "Unique identifier for a mailbox"},
	{"messageId", KindString, "Unique identifier for a message"},
	{"name", KindString, "Name of an entity or object"},
	{"nextDsn", KindTime, "Next Delivery Status Notification"},
	{"nextRenewal", KindTime, "Date or time of next renewal"},
	{"nextRetry", KindTime, "Time of next retry attempt"},
	{"oldName", KindString, "Previous name of an entity or object"},
	{"parameters", KindString, "Parameters or arguments for an operation"},
	{"path", KindString, "File path or URL path"},
	{"policy", KindString, "Policy name or identifier"},
	{"protocol", KindString, "Communication protocol used"},
	{"queueId", KindUint, "Identifier for a message queue"},
	{"rangeFrom", KindTime, "Start of a range"},
	{"rangeTo", KindTime, "End of a range"},
	{"reason", KindString, "Reason for an action or outcome"},
	{"remoteIp", KindIP, "Remote IP address"},
	{"remotePort", KindUint, "Remote port number"},
	{"renewal", KindTime, "Renewal date or information"},
	{"reportId", KindString, "Identifier for a report"},
	{"result", KindString, "Outcome or result of an operation"},
	{"size", KindUint, "Size of an object or data"},
	{"spfFail", KindUint, "Indicator of a failed SPF (Sender Policy Framework) check"},
	{"spfNone", KindUint, "Indicator of no SPF record present"},
	{"spfPass", KindUint, "Indicator of a passed SPF check"},
	{"status", KindString, "Current status of an entity or operation"},
	{"strict", KindBool, "Indicator of strict mode or enforcement"},
	{"tls", KindBool, "TLS (Transport Layer Security) version or status"},
	{"to", KindString, "Destination or recipient of a message or action"},
	{"total", KindUint, "Total count or sum"},
	{"totalFailures", KindUint, "Total number of failures"},
	{"totalSuccesses", KindUint, "Total number of successes"},
	{"type", KindString, "Type or category of an entity or event"},
	{"uid", KindUint, "Unique identifier"},
	{"uidNext", KindUint, "Next available unique identifier"},
	{"uidValidity", KindUint, "Validity token for unique identifiers"},
	{"url", KindString, "Uniform Resource Locator"},
	{"used", KindUint, "Amount or quantity used"},
	{"validFrom", KindTime, "Start date of validity period"},
	{"validTo", KindTime, "End date of validity period"},
	{"value", KindString, "Value of a property or measurement"},
	{"version", KindString, "Version number or identifier"},

	// Stalwart: keys real servers send that the seed does not list.
	{"accountName", KindString, "Name of an account"},
	{"mailboxName", KindString, "Name of a mailbox"},
	{"queueName", KindString, "Name of a message queue"},
	{"source", KindString, "Source of an event or of a message"},
	{"spanId", KindUint, "Identifier of the span (session or operation) the event belongs to"},

	// Dovecot: the field names of the seed (durations are microseconds).
	{"args", KindString, "Dovecot: command's full parameters"},
	{"attempts", KindUint, "Dovecot: number of HTTP request attempts (retries after failures + 1)"},
	{"bytes_in", KindUint, "Dovecot: number of bytes read or received"},
	{"bytes_out", KindUint, "Dovecot: number of bytes written or sent"},
	{"client_ip", KindIP, "Dovecot: source IP of a connection"},
	{"client_port", KindUint, "Dovecot: source port of a connection"},
	{"credentials_scheme", KindString, "Dovecot: type of credential (SHA256-CRYPT, PLAIN, ...)"},
	{"duration", KindDuration, "Dovecot: duration of the event (microseconds on the wire)"},
	{"error", KindString, "Dovecot: error message, set when an error happened"},
	{"human_args", KindString, "Dovecot: command's parameters as more human-readable output"},
	{"ip", KindIP, "Dovecot: target IP of a connection"},
	{"last_run_time", KindTime, "Dovecot: when the command was running last time"},
	{"local_ip", KindIP, "Dovecot: local IP"},
	{"local_port", KindUint, "Dovecot: local port"},
	{"lock_wait_usecs", KindDuration, "Dovecot: time the command spent waiting for locks (microseconds on the wire)"},
	{"login_user", KindString, "Dovecot: user being logged in as when logging in with a master user"},
	{"master_user", KindString, "Dovecot: master user name"},
	{"mechanism", KindString, "Dovecot: name of the authentication mechanism used"},
	{"message_from", KindString, "Dovecot: email address in the From field"},
	{"message_id", KindString, "Dovecot: Message-ID header's value truncated to 200 bytes"},
	{"message_size", KindUint, "Dovecot: size of the message"},
	{"message_subject", KindString, "Dovecot: Subject in UTF-8 truncated to 80 bytes"},
	{"message_vsize", KindUint, "Dovecot: size of the message with CRLF line feeds"},
	{"mode", KindString, "Dovecot: auth policy mode: allow, report"},
	{"original_username", KindString, "Dovecot: original username used"},
	{"passdb", KindString, "Dovecot: passdb driver"},
	{"passdb_id", KindUint, "Dovecot: ID number of the passdb (0..n)"},
	{"passdb_name", KindString, "Dovecot: passdb name if configured, otherwise the driver name"},
	{"policy_penalty", KindDuration, "Dovecot: time of penalty added by the policy server (microseconds on the wire)"},
	{"policy_response", KindInt, "Dovecot: auth policy response number"},
	{"policy_result", KindString, "Dovecot: auth policy result: ok, delayed, refused"},
	{"port", KindUint, "Dovecot: target port of a connection"},
	{"rcpt_param_notify", KindString, "Dovecot: value of the NOTIFY parameter of the LMTP RCPT command"},
	{"rcpt_param_orcpt", KindString, "Dovecot: address value of the ORCPT parameter of the LMTP RCPT command"},
	{"rcpt_param_orcpt_type", KindString, "Dovecot: address type of the ORCPT parameter of the LMTP RCPT command"},
	{"rcpt_to", KindString, "Dovecot: envelope recipient of the delivered message"},
	{"redirects", KindUint, "Dovecot: number of redirects done while processing an HTTP request"},
	{"remote_ip", KindIP, "Dovecot: remote IP"},
	{"remote_port", KindUint, "Dovecot: remote port"},
	{"running_usecs", KindDuration, "Dovecot: time the command itself spent running (microseconds on the wire)"},
	{"service", KindString, "Dovecot: name of the service (smtp, imap, lmtp, ...)"},
	{"status_code", KindUint, "Dovecot: HTTP result status code"},
	{"success", KindString, "Dovecot: yes, when authentication succeeded"},
	{"tag", KindString, "Dovecot: IMAP command tag"},
	{"tagged_reply", KindString, "Dovecot: full IMAP tagged reply"},
	{"tagged_reply_state", KindString, "Dovecot: IMAP tagged reply state: OK, NO, BAD"},
	{"translated_username", KindString, "Dovecot: username after translations"},
	{"transport", KindString, "Dovecot: transport security: insecure, trusted, TLS"},
	{"user", KindString, "Dovecot: full username"},
	{"userdb", KindString, "Dovecot: userdb driver"},
	{"userdb_id", KindUint, "Dovecot: ID number of the userdb (0..n)"},
	{"userdb_name", KindString, "Dovecot: userdb name if configured, otherwise the driver name"},
	{"username", KindString, "Dovecot: username without domain"},

	// Dovecot: envelope members the adapter keeps as fields (see FromDovecot).
	{"categories", KindList, "Dovecot: categories of the event"},
	{"start_time", KindTime, "Dovecot: when the event started"},
	{"time_format", KindString, `Dovecot: "unix" when the exporter wrote timestamps as seconds since 1970`},
}

// keyByName indexes keyTable by name.
var keyByName = func() map[string]Key {
	m := make(map[string]Key, len(keyTable))
	for _, k := range keyTable {
		m[k.Name] = k
	}
	return m
}()

// LookupKey returns the known key with the name. It is a map lookup and is
// safe for concurrent use.
func LookupKey(name string) (Key, bool) {
	k, ok := keyByName[name]
	return k, ok
}

// Keys returns every known key, sorted by name, in a new slice.
func Keys() []Key {
	ks := make([]Key, len(keyTable))
	copy(ks, keyTable)
	sort.Slice(ks, func(i, j int) bool { return ks[i].Name < ks[j].Name })
	return ks
}
