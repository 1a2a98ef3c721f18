{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "DenyWithoutMFA",
      "Effect": "Deny",
      "NotAction": ["iam:EnableMFADevice", "iam:ListMFADevices", "${session_action}"],
      "Resource": "*",
      "Condition": {"Null": {"aws:MultiFactorAuthPresent": "true"}}
    }
  ]
}
