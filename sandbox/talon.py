"""Talon.One's names, exactly as they appear on the wire.

The engine compares these enums, never bare strings. Each value is the string
Talon.One's Integration API sends.
"""

from __future__ import annotations

import enum

__all__ = [
    "CampaignState",
    "CouponRejection",
    "EffectType",
    "ExclusionReason",
    "GroupMode",
    "LimitAction",
    "LimitEntity",
    "Period",
    "ReferralRejection",
]


class EffectType(enum.StrEnum):
    """The effect types the sandbox emits."""

    ACCEPT_COUPON = "acceptCoupon"
    REJECT_COUPON = "rejectCoupon"
    ACCEPT_REFERRAL = "acceptReferral"
    REJECT_REFERRAL = "rejectReferral"
    SET_DISCOUNT = "setDiscount"
    SET_DISCOUNT_PER_ITEM = "setDiscountPerItem"
    SET_DISCOUNT_PER_ADDITIONAL_COST = "setDiscountPerAdditionalCost"
    SET_DISCOUNT_PER_ADDITIONAL_COST_PER_ITEM = "setDiscountPerAdditionalCostPerItem"
    ADD_FREE_ITEM = "addFreeItem"
    SHOW_NOTIFICATION = "showNotification"
    UPDATE_ATTRIBUTE = "updateAttribute"
    TRIGGER_WEBHOOK = "triggerWebhook"
    COUPON_CREATED = "couponCreated"
    REFERRAL_CREATED = "referralCreated"
    ROLLBACK_COUPON = "rollbackCoupon"
    ROLLBACK_REFERRAL = "rollbackReferral"
    ROLLBACK_DISCOUNT = "rollbackDiscount"

    @property
    def is_discount(self) -> bool:
        return self in _DISCOUNTS

    @property
    def is_item_discount(self) -> bool:
        """A discount on one cart item (a unit of it, when the cart is flattened)."""
        return self in (
            EffectType.SET_DISCOUNT_PER_ITEM,
            EffectType.SET_DISCOUNT_PER_ADDITIONAL_COST_PER_ITEM,
        )


_DISCOUNTS = frozenset(
    {
        EffectType.SET_DISCOUNT,
        EffectType.SET_DISCOUNT_PER_ITEM,
        EffectType.SET_DISCOUNT_PER_ADDITIONAL_COST,
        EffectType.SET_DISCOUNT_PER_ADDITIONAL_COST_PER_ITEM,
    }
)


class CouponRejection(enum.StrEnum):
    """``rejectCoupon.rejectionReason``."""

    NOT_FOUND = "CouponNotFound"
    PART_OF_NOT_RUNNING_CAMPAIGN = "CouponPartOfNotRunningCampaign"
    START_DATE_IN_FUTURE = "CouponStartDateInFuture"
    EXPIRED = "CouponExpired"
    PROFILE_REQUIRED = "ProfileRequired"
    RECIPIENT_DOES_NOT_MATCH = "CouponRecipientDoesNotMatch"
    LIMIT_REACHED = "CouponLimitReached"
    PROFILE_LIMIT_REACHED = "ProfileLimitReached"
    CAMPAIGN_LIMIT_REACHED = "CampaignLimitReached"
    REJECTED_BY_CONDITION = "CouponRejectedByCondition"
    EFFECT_COULD_NOT_BE_APPLIED = "EffectCouldNotBeApplied"
    PART_OF_NOT_TRIGGERED_CAMPAIGN = "CouponPartOfNotTriggeredCampaign"


class ReferralRejection(enum.StrEnum):
    """``rejectReferral.rejectionReason``: Talon.One's documented
    referral reasons only (a referral needing a profile gets ProfileLimitReached,
    its details saying so; AdvocateNotFound is not modelled: an advocate is a
    profile id the sandbox need not have seen)."""

    NOT_FOUND = "ReferralNotFound"
    PART_OF_NOT_RUNNING_CAMPAIGN = "ReferralPartOfNotRunningCampaign"
    START_DATE_IN_FUTURE = "ReferralStartDateInFuture"
    EXPIRED = "ReferralExpired"
    RECIPIENT_ID_SAME_AS_ADVOCATE = "ReferralRecipientIdSameAsAdvocate"
    RECIPIENT_DOES_NOT_MATCH = "ReferralRecipientDoesNotMatch"
    CUSTOMER_ALREADY_REFERRED = "ReferralCustomerAlreadyReferred"
    LIMIT_REACHED = "ReferralLimitReached"
    PROFILE_LIMIT_REACHED = "ProfileLimitReached"
    CAMPAIGN_LIMIT_REACHED = "CampaignLimitReached"
    REJECTED_BY_CONDITION = "ReferralRejectedByCondition"
    EFFECT_COULD_NOT_BE_APPLIED = "EffectCouldNotBeApplied"
    PART_OF_NOT_TRIGGERED_CAMPAIGN = "ReferralPartOfNotTriggeredCampaign"


class ExclusionReason(enum.StrEnum):
    """``campaignExclusionReason`` of a code whose campaign did not take part."""

    GAVE_LOWER_DISCOUNT = "CampaignGaveLowerDiscount"
    IS_NOT_FIRST = "CampaignIsNotFirst"
    NOT_IN_EVALUATION_SET = "CampaignNotInEvaluationSet"


class CampaignState(enum.StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    ARCHIVED = "archived"


class GroupMode(enum.StrEnum):
    """How an evaluation group arbitrates between its triggered campaigns."""

    STACKABLE = "stackable"
    LIST_ORDER = "listOrder"
    HIGHEST_DISCOUNT = "highestDiscount"
    LOWEST_DISCOUNT = "lowestDiscount"


class LimitAction(enum.StrEnum):
    """The limit actions the sandbox counts (a subset of Talon.One's 15)."""

    REDEEM_COUPON = "redeemCoupon"
    REDEEM_REFERRAL = "redeemReferral"
    SET_DISCOUNT = "setDiscount"
    SET_DISCOUNT_EFFECT = "setDiscountEffect"


class LimitEntity(enum.StrEnum):
    COUPON = "Coupon"
    REFERRAL = "Referral"
    PROFILE = "Profile"
    IDENTIFIER = "Identifier"


class Period(enum.StrEnum):
    """Limit periods, bucketed in UTC from the sandbox clock."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    YEARLY = "yearly"
