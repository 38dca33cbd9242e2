package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"rdev.dev/rdev/internal/githost"
	"rdev.dev/rdev/internal/rdev"
)

// CheckoutRequest is the input of CreateCheckout (SPEC §5 Checkouts).
type CheckoutRequest struct {
	Branch      string `json:"branch,omitempty"`
	NewBranch   string `json:"new_branch,omitempty"`
	FromRef     string `json:"from_ref,omitempty"`
	FeatureSlug string `json:"feature_slug,omitempty"`
	ExpiresIn   string `json:"expires_in,omitempty"`
}

// Validate checks the request in the order of precedence the sessions
// contract fixes; errors are *rdev.InvalidError.
func (r *CheckoutRequest) Validate() error {
	switch {
	case r.Branch == "" && r.NewBranch == "":
		return rdev.Invalid("branch", "branch or new_branch is required")
	case r.Branch != "" && r.NewBranch != "":
		return rdev.Invalid("new_branch", "specify either branch or new_branch, not both")
	}
	if r.NewBranch != "" {
		if err := rdev.ValidateBranchName(r.NewBranch); err != nil {
			return rdev.Invalid("new_branch", "%s", err.(*rdev.InvalidError).Message)
		}
	} else {
		if err := rdev.ValidateBranchName(r.Branch); err != nil {
			return err
		}
		if r.FromRef != "" {
			return rdev.Invalid("from_ref", "from_ref goes with new_branch, not branch")
		}
	}
	if _, err := r.ttl(); err != nil {
		return err
	}
	if err := ValidateRef(r.FromRef); err != nil {
		return err
	}
	return rdev.ValidateFeatureSlug(r.FeatureSlug)
}

var hexRe = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// ValidateRef accepts an empty ref, a commit id (4 to 64 hex digits), or a
// branch or tag name, optionally as a full "refs/…" name, under git's
// check-ref-format rules. Errors are *rdev.InvalidError for from_ref.
func ValidateRef(ref string) error {
	if ref == "" || hexRe.MatchString(ref) {
		return nil
	}
	name := ref
	if rest, ok := strings.CutPrefix(ref, "refs/"); ok {
		_, name, ok = strings.Cut(rest, "/")
		if !ok {
			return rdev.Invalid("from_ref", "invalid ref: a full ref needs a name after its namespace")
		}
	}
	if err := rdev.ValidateBranchName(name); err != nil {
		return rdev.Invalid("from_ref", "invalid ref: %s", strings.TrimPrefix(err.(*rdev.InvalidError).Message, "invalid branch name: "))
	}
	return nil
}

func (r *CheckoutRequest) ttl() (time.Duration, error) {
	if r.ExpiresIn == "" {
		return rdev.DefaultCheckoutTTL, nil
	}
	return rdev.ParseExpiresIn("expires_in", r.ExpiresIn, rdev.MaxCheckoutDays)
}

// CreatedCheckout is a new checkout with its token, shown this once.
type CreatedCheckout struct {
	rdev.Checkout
	Token        string `json:"token"`
	CloneURL     string `json:"clone_url"`
	AuthCloneURL string `json:"auth_clone_url"`
	Instructions string `json:"instructions"`
}

// CreateCheckout hands a branch to the caller: an existing branch, or a new
// one created on the server at from_ref (default: the default branch).
// Errors: rdev.ErrProjectNotFound, rdev.ErrBranchProtected,
// rdev.ErrBranchNotFound, rdev.ErrRefNotFound, rdev.ErrBranchExists,
// rdev.ErrCheckoutExists, *rdev.InvalidError.
func (s *Service) CreateCheckout(ctx context.Context, caller *rdev.APIKey, projectID string, r CheckoutRequest) (*CreatedCheckout, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	p, err := s.GetProject(ctx, caller, projectID)
	if err != nil {
		return nil, err
	}
	branch, base, err := s.resolveBranch(ctx, p, r.Branch, r.NewBranch, r.FromRef)
	if err != nil {
		return nil, err
	}
	ttl, _ := r.ttl()
	now := s.clock()
	id, token := rdev.NewCheckoutToken()
	c := rdev.Checkout{ID: id, ProjectID: p.ID, Branch: branch, FeatureSlug: r.FeatureSlug, BaseCommit: base,
		Status: rdev.CheckoutActive, TokenHash: rdev.HashToken(token), CreatedBy: caller.ID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	// The record first: its unique index decides between racing callers.
	if err := s.store.CreateCheckout(ctx, &c); err != nil {
		return nil, err
	}
	if r.NewBranch != "" {
		if err := s.git.CreateBranch(ctx, p.ID, branch, base); err != nil {
			if derr := s.store.DeleteCheckout(context.WithoutCancel(ctx), c.ID); derr != nil {
				s.log.Error("undo checkout after branch failure", "checkout", c.ID, "err", derr)
			}
			return nil, err
		}
	}
	return s.created(&c, token, fmt.Sprintf("POST /api/v1/projects/%[1]s/checkouts/%[2]s/checkin (or rdev checkout checkin %[1]s %[2]s)", c.ProjectID, c.ID)), nil
}

// created completes a new checkout's answer; checkin says how to end it.
func (s *Service) created(c *rdev.Checkout, token, checkin string) *CreatedCheckout {
	// The clone URL names the checkout (as its user name), so that git
	// asks the credential helper for exactly this checkout's token, and
	// clones of several checkouts of one project never share one.
	clone, auth := s.publicURL+"/git/"+c.ProjectID+".git", ""
	if u, err := url.Parse(clone); err == nil {
		u.User = url.User(c.ID)
		clone = u.String()
		u.User = url.UserPassword(c.ID, token)
		auth = u.String()
	}
	instr := fmt.Sprintf(`Branch %[1]s of %[2]s is checked out to you until %[3]s. This token may clone the project and push to %[1]s only.

Clone it with the rdev credential helper, which keeps the token out of argv and .git/config
(rdev checkout create saved the token for it; on another machine, export RDEV_GIT_TOKEN=<the token>):
  git clone -c credential.helper= -c 'credential.helper=!rdev git-credential' --branch %[1]s %[4]s
The clone keeps the helper for its fetches and pushes; the URL names this checkout, so the helper
answers with its token and no other.
Without the rdev CLI, auth_clone_url works too, but git then keeps the token in .git/config.

Check in when done: %[5]s.`,
		c.Branch, c.ProjectID, c.ExpiresAt.Format(time.RFC3339), clone, checkin)
	return &CreatedCheckout{Checkout: *c, Token: token, CloneURL: clone, AuthCloneURL: auth, Instructions: instr}
}

// GetCheckout returns a checkout of a project the caller may see.
func (s *Service) GetCheckout(ctx context.Context, caller *rdev.APIKey, projectID, id string) (*rdev.Checkout, error) {
	if _, err := s.GetProject(ctx, caller, projectID); err != nil {
		return nil, err
	}
	c, err := s.store.GetCheckout(ctx, projectID, id)
	if err != nil {
		return nil, err
	}
	c.Review = s.reviewSummary(ctx, c.ReviewTaskID)
	return c, nil
}

// reviewSummary describes the review task id (nil when there is none).
func (s *Service) reviewSummary(ctx context.Context, id string) *rdev.ReviewSummary {
	if id == "" {
		return nil
	}
	t, err := s.store.GetTask(ctx, id)
	if err != nil {
		return nil
	}
	return t.Summary()
}

// ListCheckouts returns a page of a project's checkouts.
func (s *Service) ListCheckouts(ctx context.Context, caller *rdev.APIKey, projectID string, page rdev.Page) ([]*rdev.Checkout, string, error) {
	if _, err := s.GetProject(ctx, caller, projectID); err != nil {
		return nil, "", err
	}
	return s.store.ListCheckouts(ctx, projectID, page)
}

// CheckinRequest is the input of a check-in. Both default to false.
type CheckinRequest struct {
	SkipReview bool `json:"skip_review,omitempty"`
	AutoMerge  bool `json:"auto_merge,omitempty"`
}

// CheckinResult answers a check-in.
type CheckinResult struct {
	CheckoutID   string              `json:"checkout_id"`
	Status       rdev.CheckoutStatus `json:"status"`
	ReviewTaskID string              `json:"review_task_id,omitempty"`
	Message      string              `json:"message"`
}

// Check-in messages.
const (
	MsgCheckinNoReview = "Checkout checked in. Token revoked."
	MsgCheckinReview   = "Checkout checked in. Token revoked. Review task queued."
)

// CheckinCheckout ends a checkout: its token stops working at once, and
// unless r.SkipReview a review task for the branch's current commit is
// queued. rdev.ErrCheckoutNotActive when it already ended.
func (s *Service) CheckinCheckout(ctx context.Context, caller *rdev.APIKey, projectID, id string, r CheckinRequest) (*CheckinResult, error) {
	c, err := s.GetCheckout(ctx, caller, projectID, id)
	if err != nil {
		return nil, err
	}
	if c.Status != rdev.CheckoutActive {
		return nil, rdev.ErrCheckoutNotActive
	}
	now := s.clock()
	var task *rdev.Task
	if !r.SkipReview {
		commit, err := s.git.ResolveBranch(ctx, projectID, c.Branch)
		if errors.Is(err, rdev.ErrBranchNotFound) {
			commit = "" // the branch was deleted by a key that may; the review will say so
		} else if err != nil {
			return nil, err
		}
		if task, err = s.newReviewTask(ctx, projectID, rdev.ReviewPayload{CheckoutID: c.ID, Branch: c.Branch, Commit: commit, AutoMerge: r.AutoMerge}, now); err != nil {
			return nil, err
		}
	}
	ended, err := s.store.EndCheckout(ctx, projectID, id, rdev.CheckoutCheckedIn, now, task)
	if err != nil {
		return nil, err
	}
	if task != nil {
		s.TaskQueued()
	}
	res := &CheckinResult{CheckoutID: ended.ID, Status: ended.Status, Message: MsgCheckinNoReview}
	if task != nil {
		res.ReviewTaskID, res.Message = task.ID, MsgCheckinReview
	}
	return res, nil
}

// GitAccess decides what credential (an API key or a checkout token) may
// do with project id's repository. Errors: rdev.ErrUnauthorized,
// rdev.ErrForbidden, rdev.ErrProjectNotFound.
func (s *Service) GitAccess(ctx context.Context, credential, projectID string) (githost.Access, error) {
	if cid, ok := rdev.CheckoutIDForToken(credential); ok {
		c, err := s.store.CheckoutByID(ctx, cid)
		if errors.Is(err, rdev.ErrCheckoutNotFound) {
			return githost.Access{}, rdev.ErrUnauthorized
		}
		if err != nil {
			return githost.Access{}, err
		}
		// No cache here: a check-in must stop the token at once.
		if !rdev.TokenMatches(credential, c.TokenHash) {
			return githost.Access{}, rdev.ErrUnauthorized
		}
		if !c.Usable(s.clock()) {
			return githost.Access{}, &rdev.EndedCheckoutError{ID: c.ID, Status: c.Status}
		}
		if c.ProjectID != projectID {
			return githost.Access{}, rdev.ErrProjectNotFound
		}
		p, err := s.store.GetProject(ctx, projectID)
		if err != nil {
			return githost.Access{}, err
		}
		actor := "checkout/" + c.ID
		if p.IsProtected(c.Branch) {
			return githost.Access{Actor: actor, Reason: fmt.Sprintf("rdev: branch %s has become protected; this checkout token can no longer push", c.Branch)}, nil
		}
		return githost.Access{Actor: actor, Push: true, OnlyRef: "refs/heads/" + c.Branch}, nil
	}
	k, err := s.Authenticate(ctx, credential)
	if err != nil {
		return githost.Access{}, err
	}
	acc := githost.Access{Actor: k.ID}
	switch {
	case k.HasScope(rdev.ScopeProjectsWrite):
		acc.Push = true
	case k.HasScope(rdev.ScopeProjectsRead, rdev.ScopeProjectsExecute, rdev.ScopeWorkersExecute):
		// Workers fetch the branches they review.
		acc.Reason = "rdev: this API key may clone and fetch but not push (pushing needs projects:write, or a checkout token for one branch)"
	default:
		return githost.Access{}, rdev.ErrForbidden
	}
	if !k.AllowsProject(projectID) {
		return githost.Access{}, rdev.ErrProjectNotFound
	}
	if _, err := s.store.GetProject(ctx, projectID); err != nil {
		return githost.Access{}, err
	}
	return acc, nil
}

// newReviewTask is a queued review task for payload, which gets the
// project's default branch and review command as they are now.
func (s *Service) newReviewTask(ctx context.Context, projectID string, payload rdev.ReviewPayload, now time.Time) (*rdev.Task, error) {
	p, err := s.store.GetProject(ctx, projectID)
	if err != nil {
		return nil, err
	}
	payload.DefaultBranch, payload.ReviewCommand = p.DefaultBranch, p.ReviewCommand
	b, _ := json.Marshal(payload)
	return &rdev.Task{ID: rdev.NewID("t"), Kind: rdev.TaskKindReview, ProjectID: projectID, Status: rdev.TaskQueued,
		Payload: b, MaxAttempts: 3, RunAfter: now, CreatedAt: now, UpdatedAt: now}, nil
}

// resolveBranch decides the branch a checkout (or session) takes and the
// commit it starts at, in the seed's order: an existing branch must exist
// (rdev.ErrBranchNotFound), then not be protected (rdev.ErrBranchProtected);
// a new branch must not be protected, and from_ref (default: the default
// branch) must name a commit (rdev.ErrRefNotFound).
func (s *Service) resolveBranch(ctx context.Context, p *rdev.Project, existing, newBranch, fromRef string) (branch, base string, err error) {
	if newBranch == "" {
		if base, err = s.git.ResolveBranch(ctx, p.ID, existing); err != nil {
			return "", "", err
		}
		if p.IsProtected(existing) {
			return "", "", rdev.ErrBranchProtected
		}
		return existing, base, nil
	}
	if p.IsProtected(newBranch) {
		return "", "", rdev.ErrBranchProtected
	}
	if fromRef == "" {
		fromRef = p.DefaultBranch
	}
	if base, err = s.git.ResolveRef(ctx, p.ID, fromRef); err != nil {
		return "", "", err
	}
	return newBranch, base, nil
}
