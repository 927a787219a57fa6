package report

// FormatName prints one line per thing a report is about (see Namer).
const FormatName = "name"

// Namer is a report that knows what -o name prints: for a prefetch, the
// nodes that hold every item (node/NAME); for a mirror, the destination
// references, digest-pinned — one a line, for the next command of a pipe.
type Namer interface {
	Names() []string
}
