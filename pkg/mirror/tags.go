package mirror

import (
	"errors"
	"fmt"
	"regexp"
	"sort"

	"github.com/Masterminds/semver/v3"
)

// TagFilter turns repository sources into the tags to copy. The zero value
// expands nothing: every source must then be an image reference.
type TagFilter struct {
	all    bool
	regex  *regexp.Regexp
	semver *semver.Constraints
	// descriptions for messages
	regexSrc, semverSrc string
}

// NewTagFilter builds a filter from --all-tags, --tags REGEX and --semver
// RANGE. REGEX is a Go regular expression matched against each tag (use ^…$ to
// anchor); RANGE is a semantic-version constraint such as ">=1.25 <1.28" or
// "~7.2"; tags that are not versions never match it. --tags and --semver may
// be combined (a tag must match both); --all-tags stands alone.
func NewTagFilter(all bool, regex, semverRange string) (TagFilter, error) {
	f := TagFilter{all: all, regexSrc: regex, semverSrc: semverRange}
	if all && (regex != "" || semverRange != "") {
		return TagFilter{}, errors.New("--all-tags copies every tag: drop it or drop --tags/--semver")
	}
	if regex != "" {
		re, err := regexp.Compile(regex)
		if err != nil {
			return TagFilter{}, fmt.Errorf("--tags %q is not a valid regular expression: %w", regex, err)
		}
		f.regex = re
	}
	if semverRange != "" {
		c, err := semver.NewConstraint(semverRange)
		if err != nil {
			return TagFilter{}, fmt.Errorf("--semver %q is not a valid version range (e.g. \">=1.25, <1.28\" or \"~7.2\"): %w", semverRange, err)
		}
		f.semver = c
	}
	return f, nil
}

// Enabled reports whether sources are repositories to expand.
func (f TagFilter) Enabled() bool { return f.all || f.regex != nil || f.semver != nil }

// String describes the filter for messages.
func (f TagFilter) String() string {
	switch {
	case f.all:
		return "--all-tags"
	case f.regex != nil && f.semver != nil:
		return fmt.Sprintf("--tags %q --semver %q", f.regexSrc, f.semverSrc)
	case f.regex != nil:
		return fmt.Sprintf("--tags %q", f.regexSrc)
	case f.semver != nil:
		return fmt.Sprintf("--semver %q", f.semverSrc)
	}
	return "no tag filter"
}

// Select returns the tags that pass, sorted: by version when a range is
// given, otherwise by name.
func (f TagFilter) Select(tags []string) []string {
	type vt struct {
		tag string
		v   *semver.Version
	}
	var out []vt
	for _, t := range tags {
		if f.regex != nil && !f.regex.MatchString(t) {
			continue
		}
		var v *semver.Version
		if f.semver != nil {
			var err error
			if v, err = semver.NewVersion(t); err != nil || !f.semver.Check(v) {
				continue
			}
		}
		out = append(out, vt{t, v})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].v != nil && out[j].v != nil && !out[i].v.Equal(out[j].v) {
			return out[i].v.LessThan(out[j].v)
		}
		return out[i].tag < out[j].tag
	})
	res := make([]string, len(out))
	for i, x := range out {
		res[i] = x.tag
	}
	return res
}
