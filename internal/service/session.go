package service

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// SessionRequest is the input of CreateSession (SPEC §5 Sessions).
type SessionRequest struct {
	Branch      string `json:"branch,omitempty"`
	NewBranch   string `json:"new_branch,omitempty"`
	FromRef     string `json:"from_ref,omitempty"`
	FeatureSlug string `json:"feature_slug,omitempty"`
	ExpiresIn   string `json:"expires_in,omitempty"`
	PreviewPort *int   `json:"preview_port,omitempty"`
}

// Validate checks the request in the seed's order of precedence; errors
// are *rdev.InvalidError carrying the seed's messages.
func (r *SessionRequest) Validate() error {
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
	}
	if _, err := r.ttl(); err != nil {
		return err
	}
	if r.Branch != "" {
		if err := rdev.ValidateBranchName(r.Branch); err != nil {
			return err
		}
		if r.FromRef != "" {
			return rdev.Invalid("from_ref", "from_ref goes with new_branch, not branch")
		}
	}
	if err := ValidateRef(r.FromRef); err != nil {
		return err
	}
	if r.PreviewPort != nil && (*r.PreviewPort < 1 || *r.PreviewPort > 65535) {
		return rdev.Invalid("preview_port", "preview_port must be between 1 and 65535")
	}
	return rdev.ValidateFeatureSlug(r.FeatureSlug)
}

func (r *SessionRequest) ttl() (time.Duration, error) {
	if r.ExpiresIn == "" {
		return rdev.DefaultSessionTTL, nil
	}
	return rdev.ParseExpiresIn("expires_in", r.ExpiresIn, rdev.MaxSessionDays)
}

// CreatedSession is a new session plus, in this response only, how to
// reach its branch.
type CreatedSession struct {
	rdev.Session
	Branch       string `json:"branch"`
	Token        string `json:"token"`
	AuthCloneURL string `json:"auth_clone_url"`
	Instructions string `json:"instructions"`
}

// CreateSession creates a checkout and binds it to the project's running
// pod. Errors, in the seed's order: *rdev.InvalidError,
// rdev.ErrProjectNotFound, rdev.ErrPodNotRunning, rdev.ErrSessionExists,
// rdev.ErrBranchNotFound (or ErrRefNotFound), rdev.ErrBranchProtected,
// rdev.ErrCheckoutExists.
func (s *Service) CreateSession(ctx context.Context, caller *rdev.APIKey, projectID string, r SessionRequest) (*CreatedSession, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	p, err := s.GetProject(ctx, caller, projectID)
	if err != nil {
		return nil, err
	}
	pod, err := s.cluster.RunningPod(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	if _, err := s.store.ActiveSession(ctx, p.ID); err == nil {
		return nil, rdev.ErrSessionExists
	} else if !errors.Is(err, rdev.ErrSessionNotFound) {
		return nil, err
	}
	branch, base, err := s.resolveBranch(ctx, p, r.Branch, r.NewBranch, r.FromRef)
	if err != nil {
		return nil, err
	}
	ttl, _ := r.ttl()
	port := rdev.DefaultPreviewPort
	if r.PreviewPort != nil {
		port = *r.PreviewPort
	}
	now := s.clock()
	coID, token := rdev.NewCheckoutToken()
	co := rdev.Checkout{ID: coID, ProjectID: p.ID, Branch: branch, FeatureSlug: r.FeatureSlug, BaseCommit: base,
		Status: rdev.CheckoutActive, TokenHash: rdev.HashToken(token), CreatedBy: caller.ID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	sid := rdev.NewID("s")
	sess := rdev.Session{ID: sid, ProjectID: p.ID, CheckoutID: coID, PodName: pod, PreviewPort: port, PreviewURL: s.previewURL(sid),
		Status: rdev.SessionActive, CreatedBy: caller.ID, CreatedAt: now, ExpiresAt: now.Add(ttl), LastActiveAt: now}
	if err := s.store.CreateSession(ctx, &sess, &co); err != nil {
		return nil, err
	}
	undo := func() {
		if err := s.store.DeleteSession(context.WithoutCancel(ctx), sid); err != nil {
			s.log.Error("undo session", "session", sid, "err", err)
		}
	}
	if r.NewBranch != "" {
		if err := s.git.CreateBranch(ctx, p.ID, branch, base); err != nil {
			undo()
			return nil, err
		}
	}
	if _, err := s.cluster.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: p.ID, SessionID: sid, Branch: branch,
		CloneURL: s.publicURL + "/git/" + p.ID + ".git", Token: token, Commit: base, PreviewPort: port}); err != nil {
		undo()
		return nil, fmt.Errorf("prepare workspace: %w", err)
	}
	s.markSandbox(&sess)
	created := s.created(&co, token, fmt.Sprintf("POST /api/v1/projects/%[1]s/sessions/%[2]s/checkin (or rdev session checkin %[1]s %[2]s)", p.ID, sid))
	return &CreatedSession{Session: sess, Branch: branch, Token: token, AuthCloneURL: created.AuthCloneURL,
		Instructions: fmt.Sprintf("Session %s runs on pod %s with branch %s checked out in its workspace; run commands with "+
			"POST /api/v1/projects/%s/sessions/%s/commands (or rdev exec %s -- CMD). Its preview: %s\n\n%s",
			sid, pod, branch, p.ID, sid, sid, sess.PreviewURL, created.Instructions)}, nil
}

// previewURL is the host form http://<session>.<preview-domain>[:port]/,
// on the port of the public URL.
func (s *Service) previewURL(sid string) string {
	u, err := url.Parse(s.publicURL)
	if err != nil || s.previewDomain == "" {
		return s.publicURL + "/preview/" + sid + "/"
	}
	host := sid + "." + s.previewDomain
	if port := u.Port(); port != "" {
		host += ":" + port
	}
	return u.Scheme + "://" + host + "/"
}

// GetSession returns a session of a project the caller may see.
func (s *Service) GetSession(ctx context.Context, caller *rdev.APIKey, projectID, id string) (*rdev.Session, error) {
	if _, err := s.GetProject(ctx, caller, projectID); err != nil {
		return nil, err
	}
	sess, err := s.store.GetSession(ctx, projectID, id)
	if err != nil {
		return nil, err
	}
	sess.Review = s.reviewSummary(ctx, sess.ReviewTaskID)
	s.markSandbox(sess)
	return sess, nil
}

// markSandbox says on a session that its code runs unconfined, when it
// does.
func (s *Service) markSandbox(sess *rdev.Session) {
	if s.unconfined {
		sess.Sandbox = "none"
	}
}

// ListSessions returns a page of a project's sessions.
func (s *Service) ListSessions(ctx context.Context, caller *rdev.APIKey, projectID string, page rdev.Page) ([]*rdev.Session, string, error) {
	if _, err := s.GetProject(ctx, caller, projectID); err != nil {
		return nil, "", err
	}
	out, next, err := s.store.ListSessions(ctx, projectID, page)
	for _, sess := range out {
		s.markSandbox(sess)
	}
	return out, next, err
}

// SessionEnd answers a check-in or a termination.
type SessionEnd struct {
	SessionID    string             `json:"session_id,omitempty"`
	ID           string             `json:"id,omitempty"`
	Status       rdev.SessionStatus `json:"status"`
	ReviewTaskID string             `json:"review_task_id,omitempty"`
	Message      string             `json:"message"`
}

// The seed's messages.
const (
	MsgSessionEnded      = "Session ended. Preview removed, token revoked."
	MsgSessionReview     = "Session ended. Review task queued."
	MsgSessionTerminated = "Session force-terminated. Preview removed, token revoked."
)

// CheckinSession ends a session: its token is revoked, its workspace
// removed, and unless r.SkipReview a review task is queued.
func (s *Service) CheckinSession(ctx context.Context, caller *rdev.APIKey, projectID, id string, r CheckinRequest) (*SessionEnd, error) {
	sess, err := s.GetSession(ctx, caller, projectID, id)
	if err != nil {
		return nil, err
	}
	if sess.Status != rdev.SessionActive {
		return nil, rdev.ErrSessionNotActive
	}
	var task *rdev.Task
	if !r.SkipReview {
		co, err := s.store.GetCheckout(ctx, projectID, sess.CheckoutID)
		if err != nil {
			return nil, err
		}
		commit, err := s.git.ResolveBranch(ctx, projectID, co.Branch)
		if err != nil && !errors.Is(err, rdev.ErrBranchNotFound) {
			return nil, err
		}
		now := s.clock()
		if task, err = s.newReviewTask(ctx, projectID, rdev.ReviewPayload{CheckoutID: co.ID, SessionID: id, Branch: co.Branch, Commit: commit, AutoMerge: r.AutoMerge}, now); err != nil {
			return nil, err
		}
	}
	ended, err := s.endSession(ctx, projectID, id, rdev.SessionEnded, task)
	if err != nil {
		return nil, err
	}
	if task != nil {
		s.TaskQueued()
	}
	res := &SessionEnd{SessionID: ended.ID, Status: ended.Status, Message: MsgSessionEnded}
	if task != nil {
		res.ReviewTaskID, res.Message = task.ID, MsgSessionReview
	}
	return res, nil
}

// TerminateSession force-ends a session (admin).
func (s *Service) TerminateSession(ctx context.Context, caller *rdev.APIKey, projectID, id string) (*SessionEnd, error) {
	if _, err := s.GetSession(ctx, caller, projectID, id); err != nil {
		return nil, err
	}
	ended, err := s.endSession(ctx, projectID, id, rdev.SessionTerminated, nil)
	if err != nil {
		return nil, err
	}
	return &SessionEnd{ID: ended.ID, Status: ended.Status, Message: MsgSessionTerminated}, nil
}

// endSession records the end, then removes the session's workspace.
func (s *Service) endSession(ctx context.Context, projectID, id string, status rdev.SessionStatus, task *rdev.Task) (*rdev.Session, error) {
	ended, err := s.store.EndSession(ctx, projectID, id, status, s.clock(), task)
	if err != nil {
		return nil, err
	}
	s.killSessionCommands(id)
	// And whatever its commands left in the background.
	if k, ok := s.cluster.(interface{ KillSession(string) int }); ok {
		if n := k.KillSession(id); n > 0 {
			s.log.Info("killed background processes of an ended session", "session", id, "processes", n)
		}
	}
	if err := s.cluster.RemoveWorkspace(context.WithoutCancel(ctx), projectID, id); err != nil {
		s.log.Error("remove session workspace", "session", id, "err", err)
	}
	return ended, nil
}

// KeepaliveSession records activity on an active session, resetting its
// idle timer.
func (s *Service) KeepaliveSession(ctx context.Context, caller *rdev.APIKey, projectID, id string) (*rdev.Session, error) {
	sess, err := s.GetSession(ctx, caller, projectID, id)
	if err != nil {
		return nil, err
	}
	if sess.Status != rdev.SessionActive {
		return nil, rdev.ErrSessionNotActive
	}
	now := s.clock()
	if err := s.store.TouchSession(ctx, id, now); err != nil {
		return nil, err
	}
	sess.LastActiveAt = now
	return sess, nil
}

// ExpireSessions ends, as expired, at most limit active sessions whose TTL
// ran out at now or that have been idle longer than idle (0: no idle
// limit): their commands are killed, workspaces removed, tokens revoked.
// It returns how many it ended.
func (s *Service) ExpireSessions(ctx context.Context, now time.Time, idle time.Duration, limit int) (int, error) {
	idleBefore := time.Time{}
	if idle > 0 {
		idleBefore = now.Add(-idle)
	}
	due, err := s.store.DueSessions(ctx, rdev.Timestamp(now), rdev.Timestamp(idleBefore), limit)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, sess := range due {
		_, err := s.endSession(ctx, sess.ProjectID, sess.ID, rdev.SessionExpired, nil)
		switch {
		case errors.Is(err, rdev.ErrSessionNotActive):
		case err != nil:
			errs = append(errs, fmt.Errorf("session %s: %w", sess.ID, err))
		default:
			n++
			s.log.Info("session expired", "project", sess.ProjectID, "session", sess.ID)
		}
	}
	return n, errors.Join(errs...)
}

// RemoveEndedWorkspaces removes what the cluster still holds of sessions
// that are not active — a workspace, its processes, its preview objects —
// which a server that stopped between ending a session and cleaning up
// after it leaves behind. It runs at start; it returns how many sessions
// it cleaned up. The cluster is listed before the sessions are read, and a
// session's record is written before its workspace, so a session being
// created meanwhile is seen as active.
func (s *Service) RemoveEndedWorkspaces(ctx context.Context) (int, error) {
	rs, err := s.cluster.List(ctx)
	if err != nil {
		return 0, err
	}
	active, err := s.store.ActiveSessions(ctx)
	if err != nil {
		return 0, err
	}
	live := make(map[string]bool, len(active))
	for _, sess := range active {
		live[sess.ID] = true
	}
	done := map[string]bool{}
	var errs []error
	for _, r := range rs {
		sid, pid := r.Labels[cluster.LabelSession], r.Labels[cluster.LabelProject]
		if sid == "" || pid == "" || live[sid] || done[sid] {
			continue
		}
		done[sid] = true
		if k, ok := s.cluster.(interface{ KillSession(string) int }); ok {
			k.KillSession(sid)
		}
		if err := s.cluster.RemoveWorkspace(ctx, pid, sid); err != nil {
			errs = append(errs, fmt.Errorf("session %s: %w", sid, err))
			continue
		}
		s.log.Info("removed the workspace of an ended session", "session", sid, "project", pid)
	}
	return len(done) - len(errs), errors.Join(errs...)
}
