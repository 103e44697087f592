package admin_test

import (
	"fmt"
	"net/netip"

	"github.com/obsproxy/obsproxy/admin"
)

func ExamplePeerAllowed() {
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	fmt.Println(admin.PeerAllowed(allow, "10.2.3.4:51234"))
	fmt.Println(admin.PeerAllowed(allow, "[::1]:51234"))
	fmt.Println(admin.PeerAllowed(allow, "192.0.2.1:51234"))
	// Output:
	// true
	// true
	// false
}
