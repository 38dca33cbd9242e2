package rdev

import (
	"context"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
)

var projectIDRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)
var componentNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// MaxNameLen bounds human-readable names.
const MaxNameLen = 100

// MaxComponents bounds the components of one project.
const MaxComponents = 32

// Project is a registered repository plus the environment it runs in.
type Project struct {
	ID                string      `json:"id"`
	Name              string      `json:"name"`
	DefaultBranch     string      `json:"default_branch"`
	ProtectedBranches []string    `json:"protected_branches"`
	ReviewCommand     string      `json:"review_command"`
	Components        []Component `json:"components"`
	// Limits bound the project's sandboxes (its pod, each review).
	Limits Limits `json:"limits"`
	// Egress says where the project's code may connect.
	Egress    Egress    `json:"egress"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Component is one process of a project: a shell command run in the
// project's code, optionally listening on a port.
type Component struct {
	Name    string            `json:"name"`
	Command string            `json:"command"`
	Port    *int              `json:"port,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Image   string            `json:"image,omitempty"`
	// Writable gives the component a writable copy of the code of its
	// own, made afresh at each deploy (a build cache, a SQLite file,
	// node_modules); otherwise it gets the code read-only.
	Writable bool `json:"writable,omitempty"`
}

// ValidateProjectID returns an *InvalidError unless id is a DNS label of at
// most 40 characters.
func ValidateProjectID(id string) error {
	if !projectIDRe.MatchString(id) {
		return Invalid("id", "must be a lowercase DNS label of 1-40 characters (a-z, 0-9, '-', not starting or ending with '-')")
	}
	return nil
}

// Normalize fills defaults: default branch "main", non-nil slices.
func (p *Project) Normalize() {
	if p.DefaultBranch == "" {
		p.DefaultBranch = "main"
	}
	if p.ProtectedBranches == nil {
		p.ProtectedBranches = []string{}
	}
	if p.Components == nil {
		p.Components = []Component{}
	}
	if p.Egress.Mode == "" {
		p.Egress.Mode = EgressPublic
	}
}

// Validate checks every field of p and returns the first problem as an
// *InvalidError naming the field.
func (p *Project) Validate() error {
	if err := ValidateProjectID(p.ID); err != nil {
		return err
	}
	if err := validateName("name", p.Name); err != nil {
		return err
	}
	if err := ValidateBranchName(p.DefaultBranch); err != nil {
		return Invalid("default_branch", "%s", err.(*InvalidError).Message)
	}
	if len(p.ProtectedBranches) > 64 {
		return Invalid("protected_branches", "at most 64 patterns")
	}
	for i, pat := range p.ProtectedBranches {
		if err := validateBranchPattern(pat); err != nil {
			return Invalid(indexField("protected_branches", i), "%s", err.Error())
		}
	}
	if len(p.ReviewCommand) > 4096 || strings.ContainsRune(p.ReviewCommand, 0) {
		return Invalid("review_command", "must be at most 4096 bytes without NUL")
	}
	if len(p.Components) > MaxComponents {
		return Invalid("components", "at most %d components", MaxComponents)
	}
	seen := map[string]bool{}
	for i, c := range p.Components {
		f := indexField("components", i)
		if err := c.validate(f); err != nil {
			return err
		}
		if seen[c.Name] {
			return Invalid(f+".name", "duplicate component name %q", c.Name)
		}
		seen[c.Name] = true
	}
	if err := p.Limits.validate(); err != nil {
		return err
	}
	return p.Egress.validate()
}

func (c *Component) validate(field string) error {
	if !componentNameRe.MatchString(c.Name) {
		return Invalid(field+".name", "must be a lowercase DNS label of 1-63 characters")
	}
	if strings.TrimSpace(c.Command) == "" {
		return Invalid(field+".command", "is required")
	}
	if len(c.Command) > 4096 || strings.ContainsRune(c.Command, 0) {
		return Invalid(field+".command", "must be at most 4096 bytes without NUL")
	}
	if c.Port != nil && (*c.Port < 1 || *c.Port > 65535) {
		return Invalid(field+".port", "must be between 1 and 65535")
	}
	if len(c.Env) > 256 {
		return Invalid(field+".env", "at most 256 variables")
	}
	for k, v := range c.Env {
		if !envNameRe.MatchString(k) || len(k) > 256 {
			return Invalid(field+".env", "invalid variable name %q", k)
		}
		if ReservedEnv(k) {
			return Invalid(field+".env", "%s: variables named RDEV_* are set by rdev; use another name", k)
		}
		if strings.ContainsRune(v, 0) || len(v) > 32<<10 {
			return Invalid(field+".env."+k, "value must be at most 32 KiB without NUL")
		}
	}
	if len(c.Image) > 512 || strings.ContainsFunc(c.Image, unicode.IsSpace) {
		return Invalid(field+".image", "must be an image reference without spaces, at most 512 bytes")
	}
	return nil
}

func validateName(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return Invalid(field, "is required")
	}
	if len([]rune(s)) > MaxNameLen {
		return Invalid(field, "must be at most %d characters", MaxNameLen)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return Invalid(field, "must not contain control characters")
	}
	return nil
}

func indexField(name string, i int) string {
	return name + "[" + itoa(i) + "]"
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

// validateBranchPattern accepts a branch name in which '*' and '?' may stand
// for parts of a path element (path.Match syntax, without character classes).
func validateBranchPattern(pat string) error {
	if strings.ContainsAny(pat, "[]\\") {
		return Invalid("", "character classes and escapes are not supported")
	}
	if _, err := path.Match(pat, ""); err != nil {
		return Invalid("", "invalid pattern")
	}
	probe := strings.NewReplacer("*", "x", "?", "x").Replace(pat)
	if err := ValidateBranchName(probe); err != nil {
		return Invalid("", "%s", err.(*InvalidError).Message)
	}
	return nil
}

// IsProtected reports whether branch is the default branch or matches one of
// the project's protected patterns.
func (p *Project) IsProtected(branch string) bool {
	if branch == p.DefaultBranch {
		return true
	}
	for _, pat := range p.ProtectedBranches {
		if ok, _ := path.Match(pat, branch); ok {
			return true
		}
	}
	return false
}

// ProjectPatch is a partial update: nil fields are left unchanged.
type ProjectPatch struct {
	Name              *string      `json:"name,omitempty"`
	DefaultBranch     *string      `json:"default_branch,omitempty"`
	ProtectedBranches *[]string    `json:"protected_branches,omitempty"`
	ReviewCommand     *string      `json:"review_command,omitempty"`
	Components        *[]Component `json:"components,omitempty"`
	Limits            *Limits      `json:"limits,omitempty"`
	Egress            *Egress      `json:"egress,omitempty"`
}

// Apply returns a copy of p with the patch applied. The caller validates it.
func (pp ProjectPatch) Apply(p Project) Project {
	if pp.Name != nil {
		p.Name = *pp.Name
	}
	if pp.DefaultBranch != nil {
		p.DefaultBranch = *pp.DefaultBranch
	}
	if pp.ProtectedBranches != nil {
		p.ProtectedBranches = *pp.ProtectedBranches
	}
	if pp.ReviewCommand != nil {
		p.ReviewCommand = *pp.ReviewCommand
	}
	if pp.Components != nil {
		p.Components = *pp.Components
	}
	if pp.Limits != nil {
		p.Limits = *pp.Limits
	}
	if pp.Egress != nil {
		p.Egress = *pp.Egress
		if p.Egress.Mode == "" {
			p.Egress.Mode = EgressPublic
		}
	}
	return p
}

// ProjectStore persists projects.
type ProjectStore interface {
	// CreateProject inserts p. ErrProjectExists if the id is taken.
	CreateProject(ctx context.Context, p *Project) error
	// GetProject returns the project. ErrProjectNotFound if missing.
	GetProject(ctx context.Context, id string) (*Project, error)
	// ListProjects returns a page of projects, newest first. A non-nil
	// filter.IDs restricts the result to those ids.
	ListProjects(ctx context.Context, filter ProjectFilter) ([]*Project, string, error)
	// UpdateProject replaces the mutable fields of p (matched by id) and
	// its UpdatedAt. ErrProjectNotFound if missing.
	UpdateProject(ctx context.Context, p *Project) error
	// DeleteProject removes the record. ErrProjectNotFound if missing.
	DeleteProject(ctx context.Context, id string) error
	// ProjectIDs returns the ids of every project (for garbage collection).
	ProjectIDs(ctx context.Context) ([]string, error)
}

// ProjectFilter selects projects for ListProjects.
type ProjectFilter struct {
	IDs []string // nil: all projects; non-nil: only these
	Page
}

// ReservedEnv reports whether a variable name is rdev's own (RDEV_*), which
// rdev sets for the processes it starts — RDEV_SESSION, RDEV_COMMAND,
// RDEV_PROJECT, RDEV_COMPONENT, RDEV_TASK, … — and which a request or a
// project's settings may not set.
func ReservedEnv(name string) bool { return strings.HasPrefix(name, "RDEV_") }
