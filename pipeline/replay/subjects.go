package replay

import (
	"fmt"
	"strings"

	"github.com/mailtel/mailtel/pipeline"
	"github.com/mailtel/mailtel/pipeline/config"
)

// ValidateSubject checks a subject filter as NATS reads it: dot-separated,
// non-empty tokens without whitespace, where '*' (one token) and '>' (the
// rest) are whole tokens and '>' comes last.
func ValidateSubject(s string) error {
	if s == "" {
		return fmt.Errorf("empty subject")
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == 0 }); i >= 0 {
		return fmt.Errorf("subject %q: contains whitespace", s)
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("subject %q: empty token (two dots, or a dot at an end)", s)
		case t == ">" && i != len(toks)-1:
			return fmt.Errorf("subject %q: '>' must be the last token", s)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return fmt.Errorf("subject %q: '*' and '>' must be whole tokens (write events.smtp.* or events.*.error, not %s)", s, t)
		}
	}
	return nil
}

// StreamOf returns the name of the mailtel stream that holds the subjects
// of a filter: events.* -> EVENTS, routed.<sink>.* -> the sink's ROUTED
// stream (config.RoutedStream), dlq.* -> DLQ (their configured names). Every subject must be valid, start with one of those
// prefixes, and all must be in the same stream.
func StreamOf(subjects []string, s config.Streams) (string, error) {
	if len(subjects) == 0 {
		return "", fmt.Errorf("no subject given (e.g. events.auth.>)")
	}
	stream, first := "", ""
	for _, subj := range subjects {
		if err := ValidateSubject(subj); err != nil {
			return "", err
		}
		var name string
		switch {
		case strings.HasPrefix(subj, pipeline.EventsPrefix):
			name = s.Events
		case strings.HasPrefix(subj, pipeline.RoutedPrefix):
			// Each sink has its own ROUTED stream.
			sink, _, _ := strings.Cut(strings.TrimPrefix(subj, pipeline.RoutedPrefix), ".")
			if sink == "*" || sink == ">" {
				return "", fmt.Errorf("subject %q spans the ROUTED streams of every sink: give one sink (routed.siem.>)", subj)
			}
			name = s.RoutedStream(sink)
		case strings.HasPrefix(subj, pipeline.DLQPrefix):
			name = s.DLQ
		default:
			return "", fmt.Errorf("subject %q is in no mailtel stream: it must start with %s, %s or %s", subj,
				pipeline.EventsPrefix, pipeline.RoutedPrefix, pipeline.DLQPrefix)
		}
		if err := matchesSomeSubject(subj); err != nil {
			return "", err
		}
		if stream != "" && name != stream {
			return "", fmt.Errorf("subjects %q (stream %s) and %q (stream %s) are in different streams: give subjects of one stream", first, stream, subj, name)
		}
		stream, first = name, subj
	}
	return stream, nil
}

// matchesSomeSubject rejects a filter on EVENTS or ROUTED that no subject
// of the stream can match because it has too few or too many tokens
// without a '>': events.<category>.<event> has three tokens and
// routed.<sink>.<category>.<event> four. (DLQ subjects vary in length.)
func matchesSomeSubject(subj string) error {
	var want int
	var form string
	switch {
	case strings.HasPrefix(subj, pipeline.EventsPrefix):
		want, form = 3, "events.<category>.<event>"
	case strings.HasPrefix(subj, pipeline.RoutedPrefix):
		want, form = 4, "routed.<sink>.<category>.<event>"
	default:
		return nil
	}
	toks := strings.Split(subj, ".")
	if toks[len(toks)-1] == ">" {
		if len(toks) > want {
			return fmt.Errorf("subject %q matches no event: subjects are %s", subj, form)
		}
		return nil
	}
	switch {
	case len(toks) < want:
		return fmt.Errorf("subject %q matches no event: subjects are %s (did you mean %s.>?)", subj, form, subj)
	case len(toks) > want:
		return fmt.Errorf("subject %q matches no event: subjects are %s", subj, form)
	}
	return nil
}

// Overlap reports whether some subject matches both filters.
func Overlap(a, b string) bool {
	ta, tb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(ta) || i == len(tb):
			return len(ta) == len(tb)
		case ta[i] == ">" || tb[i] == ">":
			return true
		case ta[i] != tb[i] && ta[i] != "*" && tb[i] != "*":
			return false
		}
	}
}

// Match reports whether subject (no wildcards) matches filter.
func Match(filter, subject string) bool {
	tf, ts := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range tf {
		if t == ">" {
			return len(ts) > i
		}
		if i >= len(ts) || (t != "*" && t != ts[i]) {
			return false
		}
	}
	return len(tf) == len(ts)
}

// ServerFilters returns the filters to give the server for subjects: the
// subjects themselves, without duplicates, when no two overlap (the server
// refuses overlapping filters); otherwise the whole stream (prefix ">"),
// and the caller matches each message against subjects with Match.
func ServerFilters(subjects []string) (filters []string, matchHere bool) {
	seen := map[string]bool{}
	for _, s := range subjects {
		if seen[s] {
			continue
		}
		for _, f := range filters {
			if Overlap(f, s) {
				prefix, _, _ := strings.Cut(s, ".")
				return []string{prefix + ".>"}, true
			}
		}
		seen[s] = true
		filters = append(filters, s)
	}
	return filters, false
}
