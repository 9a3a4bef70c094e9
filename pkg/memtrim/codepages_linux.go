//go:build linux

package memtrim

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReleaseCodePages drops from this process's page tables the pages of its own executable's
// read-only segments (code, constants, the function table). Start-up touches most of them: every
// package of the binary runs its initialisation, and the kernel maps 64 KiB around every page
// touched, so a process that has run once holds nearly all of its executable although it keeps
// using a fraction. The pages are clean copies of the file, shared through the page cache with
// every other process running the image, so nothing is lost: the ones the process needs come back
// on first use, as a minor fault. Writable segments are left alone.
func ReleaseCodePages() {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || (fields[1] != "r-xp" && fields[1] != "r--p") {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), unix.MADV_DONTNEED)
	}
}
