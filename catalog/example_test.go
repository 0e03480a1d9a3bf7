package catalog_test

import (
	"fmt"

	"github.com/mailtel/mailtel/catalog"
)

func ExampleLookup() {
	et, ok := catalog.Lookup("delivery.dsn-perm-fail")
	fmt.Println(ok, et.Source, et.Level, et.Subject(), et.Description)

	// Dovecot events have a canonical id and keep their native name.
	dc, _ := catalog.LookupNative("auth_request_finished")
	fmt.Println(dc.ID, dc.Level, dc.Section, len(dc.Fields) > 0)

	// Any subject whose last two tokens are the id finds the type.
	rt, _ := catalog.LookupSubject("routed.siem.auth.success")
	fmt.Println(rt.ID)

	_, ok = catalog.Lookup("auth.nope")
	fmt.Println(ok)
	// Output:
	// true stalwart info events.delivery.dsn-perm-fail DSN permanent failure notification
	// auth.request-finished info Authentication Server true
	// auth.success
	// false
}

func ExampleNewLevels() {
	// [tracing.level] auth.success = "debug"
	overrides, errs := catalog.ParseOverrides(map[string]string{"auth.success": "debug"})
	if len(errs) > 0 {
		fmt.Println(errs)
		return
	}
	levels := catalog.NewLevels(overrides)

	threshold := catalog.LevelInfo
	for _, id := range []string{"auth.success", "auth.failed", "auth.banned", "telemetry.update"} {
		lv := levels.Of(id)
		fmt.Println(id, lv, threshold.Records(lv))
	}
	// Output:
	// auth.success debug false
	// auth.failed debug false
	// auth.banned warn true
	// telemetry.update disable false
}
