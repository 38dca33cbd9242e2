package service_test

import (
	"errors"
	"strings"
	"testing"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// A command's request may not set rdev's own variables: RDEV_COMMAND is
// how rdev tells the command's processes apart, RDEV_SESSION and
// RDEV_PROJECT what they belong to.
func TestCommandEnvCannotSetRdevVariables(t *testing.T) {
	for _, name := range []string{"RDEV_SESSION", "RDEV_COMMAND", "RDEV_PROJECT", "RDEV_ANYTHING"} {
		_, err := service.ValidateCommand(&service.CommandRequest{Command: "true", Env: map[string]string{name: "x"}})
		var inv *rdev.InvalidError
		if !errors.As(err, &inv) || inv.Field != "env" || !strings.Contains(err.Error(), name+": variables named RDEV_* are set by rdev") {
			t.Errorf("env %s: %v", name, err)
		}
	}
	if _, err := service.ValidateCommand(&service.CommandRequest{Command: "true", Env: map[string]string{"rdev_session": "x", "MY_RDEV_X": "y"}}); err != nil {
		t.Errorf("other names refused: %v", err)
	}
}
