package catgen

import (
	"go/parser"
	"go/token"
	"reflect"
	"strings"
	"testing"
)

const goodStalwart = "# Events\n\n" +
	"## Event Levels\n\n```toml\n# not a heading\n[tracing.level]\n```\n\n" +
	"## Event Types\n\n" +
	"| Event | Description | Level |\n" +
	"| --- | --- | --- |\n" +
	"|`auth.success`|Authentication successful|`INFO`|\n" +
	"|`auth.failed`|Authentication failed|`debug`|\n" +
	"|`telemetry.update`|Tracing update|`DISABLE`|\n" +
	"\n## Key Types\n\nSome prose.\n\n" +
	"- `accountId`: Unique identifier for an account\n" +
	"- `remoteIp`: Remote IP address\n"

const goodDovecot = "Events¶\n" +
	"List of all events.\n" +
	"Authentication Server¶\n" +
	"New in version v2.3.7.\n" +
	"auth_request_finished¶\n" +
	"- user: full username\n" +
	"- login_user: when doing login using\n" +
	"master_user\n" +
	", this is the user we are logging in as - master_user: master username\n" +
	"Connection¶\n" +
	"client_connection_connected¶\n" +
	"Note\n" +
	"- client_ip: source IP\n" +
	"- bytes_in: amount of data read\n" +
	"client_connection_disconnected¶\n" +
	"- fields from\n" +
	"client_connection_connected\n" +
	"- bytes_in, bytes_out: amount of data\n" +
	"- reason: disconnection reason\n" +
	"HTTP¶\n" +
	"http_request_finished¶\n" +
	"- status_code: HTTP result status code\n" +
	"http_request_redirected¶\n" +
	"- Intermediate event sent while redirected. The\n" +
	"http_request_finished\n" +
	"is still being sent as well. - Same fields as\n" +
	"http_request_finished\n"

func names(fs []Field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}

func TestBuildGood(t *testing.T) {
	c, err := Build(goodStalwart, goodDovecot)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if c.Stalwart != 3 || c.Dovecot != 5 || len(c.Events) != 8 || len(c.StalwartKeys) != 2 {
		t.Fatalf("counts: %d stalwart, %d dovecot, %d events, %d keys", c.Stalwart, c.Dovecot, len(c.Events), len(c.StalwartKeys))
	}
	byNative := map[string]Event{}
	for i, e := range c.Events {
		if i > 0 && c.Events[i-1].ID >= e.ID {
			t.Errorf("events not sorted at %s", e.ID)
		}
		byNative[e.Native] = e
	}
	tests := []struct {
		native, id, level, section, desc string
		fields                           []string
	}{
		{"auth.success", "auth.success", "info", "", "Authentication successful", nil},
		{"auth.failed", "auth.failed", "debug", "", "Authentication failed", nil},
		{"telemetry.update", "telemetry.update", "disable", "", "Tracing update", nil},
		{"auth_request_finished", "auth.request-finished", "info", "Authentication Server",
			"Authentication Server: auth request finished", []string{"user", "login_user", "master_user"}},
		{"client_connection_connected", "client.connection-connected", "debug", "Connection",
			"Connection: client connection connected", []string{"client_ip", "bytes_in"}},
		{"client_connection_disconnected", "client.connection-disconnected", "debug", "Connection",
			"Connection: client connection disconnected", []string{"client_ip", "bytes_in", "bytes_out", "reason"}},
		{"http_request_redirected", "http.request-redirected", "debug", "HTTP",
			"HTTP: http request redirected", []string{"status_code"}},
	}
	for _, tt := range tests {
		t.Run(tt.native, func(t *testing.T) {
			e, ok := byNative[tt.native]
			if !ok {
				t.Fatalf("event missing")
			}
			if e.ID != tt.id || e.Level != tt.level || e.Section != tt.section || e.Description != tt.desc {
				t.Errorf("got %+v", e)
			}
			if got := names(e.Fields); !reflect.DeepEqual(got, tt.fields) && (len(got) != 0 || len(tt.fields) != 0) {
				t.Errorf("fields %v, want %v", got, tt.fields)
			}
		})
	}
	t.Run("unwrapped description", func(t *testing.T) {
		f := byNative["auth_request_finished"].Fields[1]
		if want := "when doing login using master_user, this is the user we are logging in as"; f.Description != want {
			t.Errorf("got %q, want %q", f.Description, want)
		}
	})
	t.Run("first occurrence wins", func(t *testing.T) {
		f := byNative["client_connection_disconnected"].Fields[1]
		if f.Name != "bytes_in" || f.Description != "amount of data read" {
			t.Errorf("got %+v", f)
		}
	})
}

func TestRender(t *testing.T) {
	c, err := Build(goodStalwart, goodDovecot)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	a, err := c.Render()
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	b, err := c.Render()
	if err != nil || string(a) != string(b) {
		t.Fatalf("second Render differs (err %v)", err)
	}
	if !strings.HasPrefix(string(a), Header+"\n\npackage catalog\n") {
		t.Errorf("bad header: %q", a[:80])
	}
	if _, err := parser.ParseFile(token.NewFileSet(), "catalog_gen.go", a, 0); err != nil {
		t.Errorf("output does not parse: %v", err)
	}
	for _, want := range []string{
		`Level: LevelDisable}`, `SourceDovecot,`, `var stalwartKeys = []Field{`,
		`{Name: "accountId", Description: "Unique identifier for an account"}`,
	} {
		if !strings.Contains(string(a), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	row := "|`auth.failed`|Authentication failed|`debug`|\n"
	stalwart := func(old, new string) string { return strings.Replace(goodStalwart, old, new, 1) }
	dovecot := func(old, new string) string { return strings.Replace(goodDovecot, old, new, 1) }
	tests := []struct {
		name              string
		stalwart, dovecot string
		want              string
	}{
		{"row missing cell", stalwart(row, "|`auth.failed`|Authentication failed|\n"), goodDovecot, "has 2 cells"},
		{"row not a table row", stalwart(row, "|`auth.failed`|Authentication failed|`debug`\n"), goodDovecot, "start and end with '|'"},
		{"unknown level", stalwart("`debug`", "`LOUD`"), goodDovecot, `unknown level "LOUD"`},
		{"empty description", stalwart("Authentication failed", ""), goodDovecot, "empty description"},
		{"id not a code span", stalwart("`auth.failed`", "auth.failed"), goodDovecot, "code span"},
		{"three tokens", stalwart("`auth.failed`", "`auth.failed.x`"), goodDovecot, "[a-z0-9-]"},
		{"upper case id", stalwart("`auth.failed`", "`Auth.failed`"), goodDovecot, "[a-z0-9-]"},
		{"one token", stalwart("`auth.failed`", "`authfailed`"), goodDovecot, "category.event"},
		{"empty token", stalwart("`auth.failed`", "`auth.`"), goodDovecot, "empty token"},
		{"duplicate id", stalwart("`auth.failed`", "`auth.success`"), goodDovecot, "duplicate stalwart id auth.success"},
		{"bad header", stalwart("| Event |", "| Name |"), goodDovecot, "table header"},
		{"row outside section", stalwart("## Key Types\n", "## Key Types\n"+row), goodDovecot, "outside"},
		{"no events", stalwart("## Event Types", "## Other"), goodDovecot, "outside"},
		{"no keys", stalwart("## Key Types", "## Other"), goodDovecot, "no key types"},
		{"bad key item", stalwart("- `remoteIp`:", "- remoteIp:"), goodDovecot, "cannot parse key type"},
		{"duplicate key", stalwart("`remoteIp`", "`accountId`"), goodDovecot, "duplicate key type accountId"},
		{"unterminated fence", goodStalwart + "```\n", goodDovecot, "unterminated code block"},
		{"collision", stalwart(row, row+"|`client.connection-connected`|Collides|`INFO`|\n"), goodDovecot,
			"id client.connection-connected of dovecot event client_connection_connected collides with stalwart event"},
		{"dovecot id one token", goodStalwart, dovecot("auth_request_finished¶", "auth¶"), "category.event"},
		{"dovecot id empty category", goodStalwart, dovecot("auth_request_finished¶", "_auth_request¶"), "empty token"},
		{"dovecot duplicate event", goodStalwart, dovecot("http_request_redirected¶", "http_request_finished¶"), "duplicate event http_request_finished"},
		{"dovecot unknown reference", goodStalwart, dovecot("- fields from\nclient_connection_connected", "- fields from\nclient_nope"), "unknown event client_nope"},
		{"dovecot self reference", goodStalwart, dovecot("- fields from\nclient_connection_connected", "- fields from\nclient_connection_disconnected"), "cycle"},
		{"dovecot bad item", goodStalwart, dovecot("- reason: disconnection reason", "- reason disconnection"), `cannot parse item "reason disconnection"`},
		{"dovecot empty item", goodStalwart, dovecot("- reason: disconnection reason", "-"), "empty list item"},
		{"dovecot item outside event", goodStalwart, dovecot("List of all events.", "- user: x"), "outside any event"},
		{"dovecot event before section", goodStalwart, "auth_request_finished¶\n- user: x\n", "before any section"},
		{"dovecot no events", goodStalwart, "Events¶\nprose\n", "no event headings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stalwart == goodStalwart && tt.dovecot == goodDovecot {
				t.Fatal("test case does not change the good input")
			}
			c, err := Build(tt.stalwart, tt.dovecot)
			if err == nil {
				t.Fatalf("Build succeeded with %d events, want error containing %q", len(c.Events), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestSplitItem(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"user: full username", []string{"user: full username"}},
		{"a: x - b: y", []string{"a: x", "b: y"}},
		{"a: range 1 - 2", []string{"a: range 1 - 2"}},
		{"Note text. - Same fields as x_y", []string{"Note text.", "Same fields as x_y"}},
		{"a: x - fields from b_c - c, d: z", []string{"a: x", "fields from b_c", "c, d: z"}},
		{"", []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := splitItem(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct{ in, want string }{
		{"INFO", "info"}, {" Warn", "warn"}, {"warning", "warn"}, {"off", "disable"},
		{"Disabled", "disable"}, {"TRACE", "trace"}, {"nope", ""}, {"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLevel(tt.in)
			if (err != nil) != (tt.want == "") || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
