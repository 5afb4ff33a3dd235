package vrrp

import (
	"net/netip"
	"testing"
	"time"
)

// Spoofed sources that fill the "logged once" set silence the logs for a
// real speaker only until they age out (loggedFor): then it is logged,
// and so is a source that keeps coming, once per loggedFor.
func TestOnceSetAgesOut(t *testing.T) {
	var o onceSet[netip.Addr]
	for i := range maxLoggedSources {
		if first, _ := o.first(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), t0); !first {
			t.Fatalf("spoofed source %d not new", i)
		}
	}
	real := netip.MustParseAddr("192.0.2.66")
	if first, overflow := o.first(real, t0.Add(time.Minute)); first || !overflow {
		t.Fatalf("a full set: first %v, overflow %v; want false, true (said once)", first, overflow)
	}
	if _, overflow := o.first(real, t0.Add(2*time.Minute)); overflow {
		t.Fatal("the overflow is said again")
	}
	if first, _ := o.first(real, t0.Add(loggedFor)); !first {
		t.Fatal("the real speaker is not logged once the spoofed sources aged out")
	}
	if first, _ := o.first(real, t0.Add(loggedFor+time.Minute)); first {
		t.Fatal("logged twice within loggedFor")
	}
	if first, _ := o.first(real, t0.Add(2*loggedFor)); !first {
		t.Fatal("a source that keeps coming is not logged again after loggedFor")
	}
	if len(o.seen) > maxLoggedSources {
		t.Fatalf("%d remembered, want at most %d", len(o.seen), maxLoggedSources)
	}
}
