package healthgate_test

import (
	"fmt"

	"github.com/obsproxy/obsproxy/healthgate"
)

// Classify turns a worker's answer to a probe into a verdict: a 2xx is
// healthy unless its JSON "status" says otherwise, and any non-2xx is
// unhealthy whatever its body says. The worker's uptime and pid are read
// for restart detection.
func ExampleClassify() {
	answers := []struct {
		code        int
		contentType string
		body        string
	}{
		{200, "text/plain", "OK"},
		{200, "application/json", `{"status":"pass","uptime_seconds":42.5,"pid":1234}`},
		{200, "application/health+json", `{"status":"warn","checks":{"redis":{"status":"warn"}}}`},
		{200, "application/json", `{"status":"banana"}`},
		{200, "application/json", `{"status":`},
		{503, "application/json", `{"status":"healthy"}`},
	}
	for _, a := range answers {
		res := healthgate.Classify(a.code, a.contentType, []byte(a.body))
		fmt.Printf("%d %-9s %q", a.code, res.Health, res.Detail)
		if res.HasUptime {
			fmt.Printf(" uptime=%gs pid=%d", res.Uptime, res.PID)
		}
		if res.Checks != nil {
			fmt.Printf(" checks=%s", res.Checks)
		}
		fmt.Println()
	}
	// Output:
	// 200 healthy   ""
	// 200 healthy   "" uptime=42.5s pid=1234
	// 200 degraded  "reports degraded" checks={"redis":{"status":"warn"}}
	// 200 unhealthy "reports \"banana\""
	// 200 unhealthy "malformed JSON"
	// 503 unhealthy "status 503"
}
