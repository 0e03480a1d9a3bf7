package metrics_test

import (
	"fmt"

	"github.com/mailtel/mailtel/pipeline/sinks/metrics"
)

func ExampleStalwartName() {
	fmt.Println(metrics.StalwartName("delivery.dsn-perm-fail"))
	// Output: delivery_dsn_perm_fail
}
