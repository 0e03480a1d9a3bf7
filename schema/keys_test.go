package schema

import (
	"sort"
	"testing"

	"github.com/mailtel/mailtel/catalog"
)

func TestLookupKey(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		ok   bool
	}{
		{"accountId", KindUint, true},
		{"causedBy", KindEvent, true},
		{"remoteIp", KindIP, true},
		{"localIp", KindIP, true},
		{"remotePort", KindUint, true},
		{"elapsed", KindDuration, true},
		{"interval", KindDuration, true},
		{"nextRetry", KindTime, true},
		{"validTo", KindTime, true},
		{"size", KindUint, true},
		{"strict", KindBool, true},
		{"accountName", KindString, true},
		{"spanId", KindUint, true},
		{"mailboxName", KindString, true},
		{"queueName", KindString, true},
		{"source", KindString, true},
		{"listenerId", KindString, true},
		{"remote_ip", KindIP, true},
		{"client_ip", KindIP, true},
		{"ip", KindIP, true},
		{"remote_port", KindUint, true},
		{"bytes_in", KindUint, true},
		{"message_vsize", KindUint, true},
		{"duration", KindDuration, true},
		{"running_usecs", KindDuration, true},
		{"lock_wait_usecs", KindDuration, true},
		{"policy_penalty", KindDuration, true},
		{"status_code", KindUint, true},
		{"user", KindString, true},
		{"start_time", KindTime, true},
		{"categories", KindList, true},
		{"RemoteIp", KindNone, false},
		{"", KindNone, false},
		{"x-custom", KindNone, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, ok := LookupKey(tt.name)
			if ok != tt.ok || k.Kind != tt.kind || (ok && (k.Name != tt.name || k.Description == "")) {
				t.Errorf("LookupKey(%q) = %+v, %v; want kind %v, %v", tt.name, k, ok, tt.kind, tt.ok)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	ks := Keys()
	if len(ks) != len(keyTable) || len(keyByName) != len(keyTable) {
		t.Fatalf("%d keys, %d in the index, %d in the table: names are not unique", len(ks), len(keyByName), len(keyTable))
	}
	if !sort.SliceIsSorted(ks, func(i, j int) bool { return ks[i].Name < ks[j].Name }) {
		t.Error("Keys() is not sorted by name")
	}
	for _, k := range ks {
		if k.Name == "" || k.Description == "" || k.Kind == KindNone || k.Kind > KindEvent {
			t.Errorf("bad key %+v", k)
		}
		if got, ok := LookupKey(k.Name); !ok || got != k {
			t.Errorf("LookupKey(%q) = %+v, %v", k.Name, got, ok)
		}
	}
	ks[0].Name = "changed"
	if Keys()[0].Name == "changed" {
		t.Error("Keys() returns shared memory")
	}
}

// TestKeysCoverCatalog checks that every key type of the Stalwart seed and
// every documented Dovecot field is a known key, Stalwart's with the seed's
// description.
func TestKeysCoverCatalog(t *testing.T) {
	seed := catalog.StalwartKeys()
	if len(seed) == 0 {
		t.Skip("catalog has no Stalwart keys (being regenerated)")
	}
	for _, f := range seed {
		k, ok := LookupKey(f.Name)
		if !ok {
			t.Errorf("seed key %q is not known", f.Name)
			continue
		}
		if k.Description != f.Description {
			t.Errorf("key %q: description %q, seed says %q", f.Name, k.Description, f.Description)
		}
	}
	for _, et := range catalog.All() {
		for _, f := range et.Fields {
			if _, ok := LookupKey(f.Name); !ok {
				t.Errorf("field %q of %s is not known", f.Name, et.Native)
			}
		}
	}
}

func BenchmarkLookupKey(b *testing.B) {
	for b.Loop() {
		LookupKey("remoteIp")
	}
}
