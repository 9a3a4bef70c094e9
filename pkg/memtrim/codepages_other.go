//go:build !linux

package memtrim

// ReleaseCodePages does nothing outside Linux.
func ReleaseCodePages() {}
