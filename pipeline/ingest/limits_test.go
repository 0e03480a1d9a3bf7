package ingest

import (
	"strings"
	"testing"

	"github.com/mailtel/mailtel/pipeline/config"
	"github.com/mailtel/mailtel/schema"
)

func TestLimits(t *testing.T) {
	l := LimitsFrom(config.Publisher{MaxFields: 3, MaxDepth: 2, MaxString: 10})
	nest := func(depth int) string {
		return strings.Repeat(`{"type":"auth.error","data":{"causedBy":`, depth) + `"x"` + strings.Repeat(`}}`, depth)
	}
	for _, tc := range []struct {
		name, data, err string
	}{
		{"fits", `{"a":1,"b":"0123456789","causedBy":` + nest(1) + `}`, ""},
		{"too many fields", `{"a":1,"b":2,"c":3,"d":4}`, "4 fields, more than the limit of 3"},
		{"long string", `{"a":"0123456789x"}`, `field "a": value of 11 bytes`},
		{"long key", `{"0123456789x":1}`, "key longer than 10 bytes"},
		{"too deep", `{"causedBy":` + nest(3) + `}`, "nested deeper than the limit of 2"},
		{"deep list", `{"a":[[["x"]]]}`, "nested deeper than the limit of 2"},
		{"long list", `{"a":[1,2,3,4]}`, "list of 4 values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := `{"id":"1","createdAt":"2025-11-27T14:59:28Z","type":"auth.success","data":` + tc.data + `}`
			var ev schema.Event
			_, err := DecodeLimits([]byte(in), &ev, l)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
	if d := LimitsFrom(config.Publisher{}); d != DefaultLimits || d.MaxFields != 512 {
		t.Errorf("zero section limits = %+v, want the defaults %+v", d, DefaultLimits)
	}
}
