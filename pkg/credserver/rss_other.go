//go:build !linux

package credserver

func releaseStartupPages() {}
