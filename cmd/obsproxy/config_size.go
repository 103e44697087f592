package main

import (
	"fmt"
	"math"

	"github.com/dustin/go-humanize"
)

// byteSize is a size setting in bytes (spec section 2: "Sizes accept a
// byte count or a number with a unit: 512MiB, 1GiB, 500MB"). Its text form
// is parsed by github.com/dustin/go-humanize's ParseBytes: a plain count
// (1048576), SI units (kB, MB, GB: powers of 1000) and IEC units (KiB,
// MiB, GiB: powers of 1024), case-insensitive, with an optional space and
// a fraction (1.5GiB). caarlos0/env and the flags parse it through
// UnmarshalText, so a bad value is reported by loadConfig with the
// setting's accept tag; range rules belong to the setting's validator.
type byteSize int64

// UnmarshalText implements encoding.TextUnmarshaler. It fails on text
// ParseBytes rejects (negative numbers included) and on sizes above
// math.MaxInt64 bytes.
func (b *byteSize) UnmarshalText(text []byte) error {
	n, err := humanize.ParseBytes(string(text))
	if err != nil {
		return fmt.Errorf("parsing size %q: %w", text, err)
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("parsing size %q: too large", text)
	}
	*b = byteSize(n)
	return nil
}

// String returns the size in the IEC form humanize writes (8.0 MiB).
func (b byteSize) String() string { return humanize.IBytes(uint64(b)) }
