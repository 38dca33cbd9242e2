package service

import (
	"context"
	"errors"
	"fmt"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// DeployProject makes the project running on the cluster.
func (s *Service) DeployProject(ctx context.Context, caller *rdev.APIKey, id string) (*cluster.Status, error) {
	p, err := s.GetProject(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if err := s.cluster.Deploy(ctx, p); err != nil {
		return nil, fmt.Errorf("deploy %s: %w", id, err)
	}
	return s.cluster.Status(ctx, id)
}

// UndeployProject ends the project's active session and stops its pod.
func (s *Service) UndeployProject(ctx context.Context, caller *rdev.APIKey, id string) (*cluster.Status, error) {
	if _, err := s.GetProject(ctx, caller, id); err != nil {
		return nil, err
	}
	if err := s.endActiveSession(ctx, id); err != nil {
		return nil, err
	}
	if err := s.cluster.Undeploy(ctx, id); err != nil {
		return nil, fmt.Errorf("undeploy %s: %w", id, err)
	}
	return s.cluster.Status(ctx, id)
}

// ProjectStatus reports the project's pod and processes.
func (s *Service) ProjectStatus(ctx context.Context, caller *rdev.APIKey, id string) (*cluster.Status, error) {
	if _, err := s.GetProject(ctx, caller, id); err != nil {
		return nil, err
	}
	return s.cluster.Status(ctx, id)
}

// endActiveSession terminates the project's active session, if any.
func (s *Service) endActiveSession(ctx context.Context, projectID string) error {
	if s.cluster == nil {
		return nil
	}
	sess, err := s.store.ActiveSession(ctx, projectID)
	if errors.Is(err, rdev.ErrSessionNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = s.endSession(ctx, projectID, sess.ID, rdev.SessionTerminated, nil)
	if errors.Is(err, rdev.ErrSessionNotActive) {
		return nil
	}
	return err
}
