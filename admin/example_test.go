package admin_test

import (
	"fmt"
	"net/http/httptest"
	"net/netip"

	"github.com/obsproxy/obsproxy/admin"
)

func ExampleAccess_Admits() {
	diag := admin.Access{Token: "s3cret", Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}

	fromInside := httptest.NewRequest("GET", "/diag", nil)
	fromInside.RemoteAddr = "10.2.3.4:51234"
	withToken := httptest.NewRequest("GET", "/diag", nil)
	withToken.RemoteAddr = "192.0.2.1:51234"
	withToken.Header.Set("Authorization", "Bearer s3cret")
	spoofed := httptest.NewRequest("GET", "/diag", nil)
	spoofed.RemoteAddr = "192.0.2.1:51234"
	spoofed.Header.Set("X-Forwarded-For", "10.2.3.4") // ignored: TrustForwardedFor is false

	fmt.Println(diag.Admits(fromInside), diag.Admits(withToken), diag.Admits(spoofed))
	// Output: true true false
}

func ExampleQuantile() {
	// Cumulative counts per upper bound (10 ms, 100 ms, 1 s) and +Inf:
	// 80 requests within 10 ms, 95 within 100 ms, 100 in all.
	bounds := []float64{0.01, 0.1, 1}
	counts := []uint64{80, 95, 100, 100}
	p50, _ := admin.Quantile(0.50, bounds, counts)
	p95, _ := admin.Quantile(0.95, bounds, counts)
	fmt.Printf("p50 %.2f ms, p95 %.0f ms\n", p50*1000, p95*1000)
	// Output: p50 6.25 ms, p95 100 ms
}
