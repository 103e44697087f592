//go:build !unix

package admin

// cpuTimes is not available off Unix: both values are null in /diag.
func cpuTimes() (user, system *float64) { return nil, nil }
