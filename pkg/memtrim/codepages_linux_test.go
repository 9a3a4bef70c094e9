//go:build linux

package memtrim

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// residentCode is how much of this process's executable's read-only mappings is resident, in
// KiB (the Rss lines of /proc/self/smaps).
func residentCode(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	total, inCode := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"):
			inCode = len(fields) >= 6 && fields[5] == exe && (fields[1] == "r-xp" || fields[1] == "r--p")
		case inCode && len(fields) == 3 && fields[0] == "Rss:":
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			total += n
		}
	}
	return total
}

// Releasing the code pages leaves the process with fewer of its executable's pages resident, and
// it goes on running: the pages it needs come back (in a binary this small, most of what it holds
// is what reading smaps runs, so only a part goes).
func TestReleaseCodePagesShrinksResidentCode(t *testing.T) {
	before := residentCode(t)
	if before < 512 {
		t.Skipf("only %d KiB of the executable resident: nothing to show", before)
	}
	ReleaseCodePages()
	after := residentCode(t)
	if after > before-256 {
		t.Errorf("%d KiB of the executable resident before the release, %d KiB after: want at least 256 KiB fewer", before, after)
	}
	t.Logf("executable resident: %d KiB → %d KiB", before, after)
}
