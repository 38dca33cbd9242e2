package rdev

import "strings"

// MaxBranchLen bounds branch names (bytes, without "refs/heads/").
const MaxBranchLen = 200

// ValidateBranchName applies git's check-ref-format rules to a branch name
// (the part after refs/heads/), plus a length limit and a ban on a leading
// '-'. It returns an *InvalidError for field "branch".
func ValidateBranchName(name string) error {
	bad := func(why string) error { return Invalid("branch", "invalid branch name: %s", why) }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxBranchLen:
		return bad("longer than 200 bytes")
	case name == "@":
		return bad(`"@" is not allowed`)
	case strings.HasPrefix(name, "-"):
		return bad(`must not start with "-"`)
	case strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/"):
		return bad(`must not start or end with "/"`)
	case strings.HasSuffix(name, "."):
		return bad(`must not end with "."`)
	case strings.Contains(name, ".."):
		return bad(`must not contain ".."`)
	case strings.Contains(name, "@{"):
		return bad(`must not contain "@{"`)
	case strings.Contains(name, "//"):
		return bad(`must not contain "//"`)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x20 || c == 0x7f {
			return bad("control characters are not allowed")
		}
		switch c {
		case ' ', '~', '^', ':', '?', '*', '[', '\\':
			return bad("characters ' ', '~', '^', ':', '?', '*', '[' and '\\' are not allowed")
		}
	}
	for _, comp := range strings.Split(name, "/") {
		if strings.HasPrefix(comp, ".") {
			return bad(`a path component must not start with "."`)
		}
		if strings.HasSuffix(comp, ".lock") {
			return bad(`a path component must not end with ".lock"`)
		}
	}
	return nil
}
