"""IAM policy documents as data, and who is covered by which policy.

Every way a policy is written in Terraform or plan JSON (a ``jsonencode()`` result, a
heredoc or quoted JSON string, ``file()``/``templatefile()`` content, a
``data "aws_iam_policy_document"``) is turned into one statement model
(:mod:`.statements`). Attachments are then followed across resources (inline and managed
policies on users, groups and roles, group membership; :mod:`.attachments`) so a rule can
ask what applies to a principal. Wildcard matching of actions and resources is in
:mod:`.patterns`; rules query all of it through the declarative operators of
:mod:`.operators`, so no rule needs Python of its own.

Three-valued throughout: a value that cannot be known statically stays an
:class:`~soc2infra._cogs.model.Unknown` inside the statement, and a policy that cannot be
resolved at all (an ARN defined outside the scanned tree) is a *gap*. Gaps and unknowns
turn results into *unknown*, never into a silent pass or fail.
"""
