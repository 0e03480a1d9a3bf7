// Package catalog holds every event type mailtel knows: the Stalwart events
// and the Dovecot events of the seed documents, with their canonical ids,
// descriptions, default levels and documented fields.
//
// The data lives in catalog_gen.go, generated from the copies of the seed
// documents in seeds/ by `go generate ./catalog`. Lookups by id, by native
// name and by subject are map lookups (O(1)); the catalog is immutable and
// safe for concurrent use.
//
// # Canonical ids
//
// Every event has an id of the form "category.event", a valid two-token NATS
// subject tail. Stalwart ids are used verbatim ("delivery.dsn-perm-fail").
// Dovecot names are mapped by one reversible rule: the text before the first
// underscore is the category and the rest, with underscores turned into
// hyphens, is the event ("auth_request_finished" -> "auth.request-finished").
// Dovecot names contain neither '.' nor '-', so the native name is recovered
// by turning both back into underscores (see [DovecotID] and [DovecotName]).
// The generator refuses to produce a catalog in which a Dovecot id collides
// with a Stalwart id.
//
// # Dovecot levels
//
// Dovecot events have no levels of their own. mailtel gives "*_finished"
// events the level info and "*_started" and the intermediate events
// ("*_continue", "*_challenged", "*_redirected", "*_retried", "*_connected",
// "*_disconnected") the level debug (see [DovecotLevel]).
package catalog

//go:generate go run ./internal/gen -seeds seeds -out catalog_gen.go

import "strings"

// Source is the kind of mail server an event type comes from.
type Source uint8

// The sources.
const (
	SourceUnknown Source = iota
	SourceStalwart
	SourceDovecot
)

var sourceNames = [...]string{"unknown", "stalwart", "dovecot"}

// String returns "stalwart", "dovecot" or "unknown".
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// ParseSource maps "stalwart" and "dovecot" (any case) to their Source and
// anything else to SourceUnknown.
func ParseSource(s string) Source {
	switch strings.ToLower(s) {
	case "stalwart":
		return SourceStalwart
	case "dovecot":
		return SourceDovecot
	}
	return SourceUnknown
}

// Field is a documented field of an event type or a key type.
type Field struct {
	Name        string
	Description string
}

// EventType describes one event type.
type EventType struct {
	// Index is the position of the type in All(); routing tables are slices
	// indexed by it.
	Index int
	// ID is the canonical "category.event" id.
	ID string
	// Category and Event are the two halves of ID.
	Category, Event string
	Source          Source
	// Native is the name the mail server uses (equal to ID for Stalwart).
	Native      string
	Description string
	// Level is the default level.
	Level Level
	// Section is the Dovecot documentation section ("Authentication Server").
	Section string
	// Fields are the documented fields (Dovecot only).
	Fields []Field
}

// Subject returns the EVENTS subject of the type: "events.<id>".
func (t *EventType) Subject() string { return SubjectPrefix + t.ID }

// SubjectPrefix is the prefix of every subject in the EVENTS stream.
const SubjectPrefix = "events."

var (
	byID     map[string]*EventType
	byNative map[string]*EventType
)

func init() {
	byID = make(map[string]*EventType, len(types))
	byNative = make(map[string]*EventType, len(types))
	for i := range types {
		t := &types[i]
		t.Index = i
		byID[t.ID] = t
		byNative[t.Native] = t
	}
}

// All returns every event type, sorted by id. The slice must not be modified.
func All() []EventType { return types }

// Len returns the number of event types.
func Len() int { return len(types) }

// Lookup returns the event type with the canonical id.
func Lookup(id string) (*EventType, bool) {
	t, ok := byID[id]
	return t, ok
}

// LookupNative returns the event type with the native name ("auth.success"
// for Stalwart, "auth_request_finished" for Dovecot).
func LookupNative(name string) (*EventType, bool) {
	t, ok := byNative[name]
	return t, ok
}

// LookupSubject returns the event type of an EVENTS subject
// ("events.auth.success"), or of any subject whose last two tokens are the
// id ("routed.siem.auth.success").
func LookupSubject(subject string) (*EventType, bool) {
	return Lookup(SubjectID(subject))
}

// SubjectID returns the last two tokens of a subject, which is where every
// mailtel subject carries the event id. It allocates nothing.
func SubjectID(subject string) string {
	i := strings.LastIndexByte(subject, '.')
	if i <= 0 {
		return subject
	}
	j := strings.LastIndexByte(subject[:i], '.')
	return subject[j+1:]
}

// DovecotID maps a Dovecot event name to its canonical id.
func DovecotID(name string) string {
	cat, rest, ok := strings.Cut(name, "_")
	if !ok {
		return name
	}
	return cat + "." + strings.ReplaceAll(rest, "_", "-")
}

// DovecotName maps a canonical id of a Dovecot event back to its name.
func DovecotName(id string) string { return dovecotNamer.Replace(id) }

var dovecotNamer = strings.NewReplacer(".", "_", "-", "_")

// DovecotLevel is the default level mailtel gives a Dovecot event: info for
// "*_finished", debug for "*_started" and every intermediate event.
func DovecotLevel(name string) Level {
	if strings.HasSuffix(name, "_finished") {
		return LevelInfo
	}
	return LevelDebug
}
