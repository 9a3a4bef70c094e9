package controllers

import (
	"context"
	"errors"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// getSecret returns the target Secret and whether this AssumedRole controls it. Only labelled
// Secrets are cached, so a Secret missing from the cache may still exist unlabelled (someone
// else's). That is not read past the cache on every issuance: creating the Secret fails when it
// exists, and writeSecret then reports the conflict without touching it. Once a conflict is
// known, the API reader is asked first, so no further call to AWS is made until it clears.
func (r *AssumedRoleReconciler) getSecret(ctx context.Context, ar *rkv1.AssumedRole) (*corev1.Secret, bool, error) {
	key := client.ObjectKey{Namespace: ar.Namespace, Name: secretName(ar)}
	secret := &corev1.Secret{}
	err := r.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) && conflictKnown(ar) {
		err = r.APIReader.Get(ctx, key, secret)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return secret, metav1.IsControlledBy(secret, ar), nil
}

// conflictKnown reports whether the last reconcile found the Secret taken by someone else.
func conflictKnown(ar *rkv1.AssumedRole) bool {
	c := meta.FindStatusCondition(ar.Status.Conditions, rkv1.ConditionReady)
	return c != nil && c.Reason == rkv1.ReasonSecretConflict
}

// desiredSecret is the Secret for the given credentials under the current spec. Its stamp
// records the digest of the data and what shaped it.
func (r *AssumedRoleReconciler) desiredSecret(s *scope, creds secretdata.Input, st secretdata.Stamp) (*corev1.Secret, error) {
	ar := s.ar
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName(ar), Namespace: ar.Namespace},
		Type:       secretType(ar),
	}
	switch {
	case s.req.ecr != nil:
		secret.Data = map[string][]byte{secretdata.KeyDockerConfigJSON: secretdata.DockerConfigJSON(s.registries)}
	default:
		secret.Data = secretdata.Render(renderInput(ar, s.req.region, creds))
	}
	if tmpl := ar.Spec.Secret.Template; tmpl != nil && s.req.ecr == nil {
		rendered, err := secretdata.RenderTemplates(tmpl.Data, templateValues(s, creds))
		if err != nil {
			return nil, &templateError{msg: sts.Redact(err.Error())}
		}
		maps.Copy(secret.Data, rendered)
	}
	st.Expiration = creds.Expiration
	st.DataDigest = secretdata.DataDigest(secret.Data)
	secret.Labels, secret.Annotations = r.desiredMeta(s, st)
	if err := controllerutil.SetControllerReference(ar, secret, r.Scheme()); err != nil {
		return nil, err
	}
	return secret, nil
}

// desiredMeta are the labels and annotations of the Secret, with the stamp st (whose render hash
// it sets from the spec).
func (r *AssumedRoleReconciler) desiredMeta(s *scope, st secretdata.Stamp) (labels, annotations map[string]string) {
	ar := s.ar
	labels, annotations = map[string]string{}, map[string]string{}
	maps.Copy(labels, ar.Spec.Secret.Labels)
	maps.Copy(annotations, ar.Spec.Secret.Annotations)
	labels[rkv1.LabelAssumedRole] = ar.Name
	st.RenderHash = renderHash(ar, s.req.region)
	st.Annotate(annotations)
	return labels, annotations
}

// secretInput is what the Secret holds of issued credentials; signingCredentials what a chain
// signs with from a Secret's. The two directions of one correspondence.
func secretInput(c sts.Credentials) secretdata.Input {
	return secretdata.Input{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken, Expiration: c.Expiration}
}

func signingCredentials(in secretdata.Input) *sts.Credentials {
	return &sts.Credentials{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey, SessionToken: in.SessionToken, Expiration: in.Expiration}
}

// templateError: spec.secret.template does not render with the credentials at hand.
type templateError struct{ msg string }

func (e *templateError) Error() string { return "spec.secret.template: " + e.msg }

// writeSecret writes freshly issued credentials: create, or update in place (never delete and
// re-create). When the Secret changed since it was read, it is read again and written again, so
// the credentials of a successful STS call are not thrown away; each copy read again is checked
// to be this AssumedRole's (one deleted and re-created by someone else meanwhile is never
// adopted), and one found gone is created.
func (r *AssumedRoleReconciler) writeSecret(ctx context.Context, s *scope, res *sts.Result, slot int) error {
	desired, err := r.desiredSecret(s, secretInput(res.Credentials),
		secretdata.Stamp{IssuedAt: res.IssuedAt, RequestHash: s.req.hash, Rotate: s.ar.Annotations[rkv1.AnnotationRotate], Slot: slot})
	if err != nil {
		return err
	}
	current := s.secret
	// again re-reads the Secret and asks RetryOnConflict for another attempt.
	again := func() error {
		var err error
		if current, err = r.readOwned(ctx, desired, s.ar); err != nil {
			return err
		}
		return errChanged
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if current == nil {
			err := r.Create(ctx, desired)
			if !apierrors.IsAlreadyExists(err) {
				return err
			}
			return again()
		}
		if current.Type != desired.Type {
			// A Secret's type cannot change: replace it, and only the copy that was read.
			err := r.Delete(ctx, current, client.Preconditions{UID: &current.UID, ResourceVersion: &current.ResourceVersion})
			switch {
			case apierrors.IsConflict(err): // changed since it was read
				return again()
			case client.IgnoreNotFound(err) != nil:
				return err
			}
			s.log.Info("replaced Secret to change its type", "secret", desired.Name, "from", current.Type, "to", desired.Type)
			current = nil
			return errChanged
		}
		update := current.DeepCopy()
		update.Labels, update.Annotations, update.Data, update.Type = desired.Labels, desired.Annotations, desired.Data, desired.Type
		update.OwnerReferences = desired.OwnerReferences
		err := r.Update(ctx, update)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return again()
		}
		return err
	})
}

// readOwned reads the Secret past the cache: nil when it is gone, errSecretTaken when it is not
// this AssumedRole's.
func (r *AssumedRoleReconciler) readOwned(ctx context.Context, desired *corev1.Secret, ar *rkv1.AssumedRole) (*corev1.Secret, error) {
	current := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(desired), current)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	case !metav1.IsControlledBy(current, ar):
		return nil, errSecretTaken
	}
	return current, nil
}

// errChanged makes RetryOnConflict write again after the Secret was read anew.
var errChanged = apierrors.NewConflict(corev1.Resource("secrets"), "", errors.New("the Secret changed while it was written; writing it again"))

// errSecretTaken: the Secret exists and this AssumedRole does not own it.
var errSecretTaken = errors.New("the Secret exists and is not owned by this AssumedRole")

// repairSecret rewrites what the Secret should hold for its current credentials under the current
// spec (derived files, labels, annotations, keys someone edited or removed), without calling AWS.
// In steady state it writes nothing and, from the cache's compact copy, reads nothing either:
// the data is the operator's by digest, the render hash says the spec asks for the same files,
// and labels and annotations are compared as they are. Only when something differs is the Secret
// read past the cache, to render it again from its credentials.
func (r *AssumedRoleReconciler) repairSecret(ctx context.Context, s *scope) error {
	if s.cached {
		labels, annotations := r.desiredMeta(s, s.stamp)
		cur := s.secret
		if cur.Type == secretType(s.ar) && equality.Semantic.DeepEqual(cur.Labels, labels) && equality.Semantic.DeepEqual(withoutCacheNotes(cur.Annotations), annotations) {
			return nil
		}
		live, err := r.readSecret(ctx, s.ar)
		if err != nil || live == nil {
			return err // gone: its deletion brings another reconcile
		}
		r.setSecret(s, live)
		if !s.credsOK {
			return nil // edited away: the next reconcile re-issues (KeysMissing)
		}
	}
	desired, err := r.desiredSecret(s, s.creds, s.stamp)
	if err != nil {
		return err
	}
	cur := s.secret
	if equality.Semantic.DeepEqual(cur.Data, desired.Data) && equality.Semantic.DeepEqual(cur.Labels, desired.Labels) && cur.Type == desired.Type &&
		(equality.Semantic.DeepEqual(cur.Annotations, desired.Annotations) || onlyDigestsMissing(cur.Annotations, desired.Annotations)) {
		return nil
	}
	update := cur.DeepCopy()
	update.Labels, update.Annotations, update.Data = desired.Labels, desired.Annotations, desired.Data
	s.log.Info("repairing Secret", "secret", cur.Name)
	return r.Update(ctx, update)
}

// withoutCacheNotes are a cached Secret's annotations as the API server has them.
func withoutCacheNotes(annotations map[string]string) map[string]string {
	out := maps.Clone(annotations)
	delete(out, annotationCachedNote)
	return out
}

// onlyDigestsMissing is true when the annotations are the desired ones but for the data digest
// and render hash, which Secrets written by earlier versions lack: they are added at the next
// issuance rather than by a write to every Secret on upgrade.
func onlyDigestsMissing(cur, desired map[string]string) bool {
	if _, has := cur[rkv1.AnnotationDataDigest]; has {
		return false
	}
	want := maps.Clone(desired)
	delete(want, rkv1.AnnotationDataDigest)
	delete(want, rkv1.AnnotationRenderHash)
	return equality.Semantic.DeepEqual(cur, want)
}
