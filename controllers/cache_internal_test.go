package controllers

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

// The shared strings are bounded: no string longer than sharedMaxLen and no more than
// sharedMax strings are taken, and past the bound strings come back as they are.
func TestSharedStringsAreBounded(t *testing.T) {
	p := &stringSet{set: map[string]string{}}
	a := strings.Clone("rolekeeper.io/issued-at")
	b := strings.Clone("rolekeeper.io/issued-at")
	if got := p.of(b); unsafe.StringData(p.of(a)) != unsafe.StringData(got) {
		t.Error("two equal strings are not shared")
	}
	long := strings.Repeat("k", sharedMaxLen+1)
	if p.of(long); len(p.set) != 1 {
		t.Errorf("a string of %d bytes was taken", len(long))
	}
	for i := range 2 * sharedMax {
		p.of(fmt.Sprintf("tenant-key-%d", i))
	}
	if len(p.set) != sharedMax {
		t.Errorf("%d strings shared, want at most %d", len(p.set), sharedMax)
	}
	late := fmt.Sprintf("tenant-key-%d", 3*sharedMax)
	if got := p.of(late); got != late {
		t.Errorf("past the bound %q came back as %q", late, got)
	}
}
