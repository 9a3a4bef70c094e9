package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// maxChainDepth bounds how far a chain of source references is followed looking for a cycle.
const maxChainDepth = 16

// resolveSource loads the credentials of spec.source.assumedRoleRef (role chaining). It waits
// (SourceNotReady) while the source has no valid credentials and refuses chains that loop back.
// Nothing is read when nothing is due, so a steady chain costs no extra work.
func (r *AssumedRoleReconciler) resolveSource(ctx context.Context, s *scope) (bool, ctrl.Result, error) {
	if s.ar.Spec.Source == nil {
		return false, ctrl.Result{}, nil
	}
	chain := []string{s.ar.Name}
	name := s.ar.Spec.Source.AssumedRoleRef.Name
	var first *rkv1.AssumedRole
	for depth := 0; depth < maxChainDepth; depth++ {
		for _, seen := range chain {
			if seen == name {
				r.block(s, rkv1.ReasonInvalidSpec, fmt.Sprintf("spec.source forms a cycle: %s -> %s; break the chain", strings.Join(chain, " -> "), name), true)
				return true, ctrl.Result{}, nil
			}
		}
		src := &rkv1.AssumedRole{}
		err := r.Get(ctx, client.ObjectKey{Namespace: s.ar.Namespace, Name: name}, src)
		if apierrors.IsNotFound(err) {
			break // a missing link cannot loop; reported below if it is the direct source
		}
		if err != nil {
			return true, ctrl.Result{}, err
		}
		if first == nil {
			first = src
		}
		if src.Spec.Source == nil {
			break
		}
		chain = append(chain, name)
		name = src.Spec.Source.AssumedRoleRef.Name
	}
	ref := s.ar.Spec.Source.AssumedRoleRef.Name
	if first == nil {
		r.block(s, rkv1.ReasonSourceNotReady, fmt.Sprintf("source AssumedRole %s does not exist in namespace %s", ref, s.ar.Namespace), false)
		return true, ctrl.Result{}, nil // its creation re-queues this AssumedRole
	}
	if first.Spec.Secret.ECR != nil {
		r.block(s, rkv1.ReasonInvalidSpec, fmt.Sprintf("source AssumedRole %s writes an image-pull Secret, which holds no AWS credentials; chain from an AssumedRole with the default Secret type", ref), true)
		return true, ctrl.Result{}, nil
	}
	creds, ok, err := r.sourceCredentials(ctx, first)
	if err != nil {
		return true, ctrl.Result{}, err
	}
	if !ok {
		r.block(s, rkv1.ReasonSourceNotReady, fmt.Sprintf("source AssumedRole %s has no valid credentials yet", ref), false)
		return true, ctrl.Result{}, nil
	}
	s.source = creds
	return false, ctrl.Result{}, nil
}

// sourceCredentials reads the current credentials of a source AssumedRole from its Secret, only
// when that Secret is its own and Ready says they are current.
func (r *AssumedRoleReconciler) sourceCredentials(ctx context.Context, src *rkv1.AssumedRole) (*sts.Credentials, bool, error) {
	if !meta.IsStatusConditionTrue(src.Status.Conditions, rkv1.ConditionReady) {
		return nil, false, nil
	}
	secret := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: src.Namespace, Name: secretName(src)}, secret)
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if !metav1.IsControlledBy(secret, src) {
		return nil, false, nil
	}
	in, ok := secretdata.Credentials(secret.Data)
	c := &sts.Credentials{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey, SessionToken: in.SessionToken, Expiration: in.Expiration}
	if !ok || !c.Valid(r.Clock.Now()) {
		return nil, false, nil
	}
	return c, true, nil
}
