//! Accounts, refresh tokens, recipes and sessions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    DisplayName,
    PasswordHash,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    UserId,
    FamilyId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Recipes {
    Table,
    Id,
    OwnerId,
    Title,
    Description,
    Servings,
    Steps,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    HostId,
    RecipeId,
    Title,
    AllowGuests,
    State,
    Recipe,
    CreatedAt,
    StartedAt,
    EndedAt,
    UpdatedAt,
}

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn nullable_timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
                    .col(
                        ColumnDef::new(Users::Username)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(Users::DisplayName)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Users::PasswordHash)
                            .string_len(256)
                            .not_null(),
                    )
                    .col(timestamp(Users::CreatedAt))
                    .col(timestamp(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(
                        ColumnDef::new(RefreshTokens::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RefreshTokens::UserId).uuid().not_null())
                    .col(ColumnDef::new(RefreshTokens::FamilyId).uuid().not_null())
                    .col(
                        ColumnDef::new(RefreshTokens::TokenHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(timestamp(RefreshTokens::CreatedAt))
                    .col(timestamp(RefreshTokens::ExpiresAt))
                    .col(nullable_timestamp(RefreshTokens::UsedAt))
                    .col(nullable_timestamp(RefreshTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshTokens::Table, RefreshTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_family")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::FamilyId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Recipes::Table)
                    .col(ColumnDef::new(Recipes::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Recipes::OwnerId).uuid().not_null())
                    .col(ColumnDef::new(Recipes::Title).string_len(256).not_null())
                    .col(ColumnDef::new(Recipes::Description).text().null())
                    .col(ColumnDef::new(Recipes::Servings).integer().null())
                    .col(ColumnDef::new(Recipes::Steps).json().not_null())
                    .col(timestamp(Recipes::CreatedAt))
                    .col(timestamp(Recipes::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Recipes::Table, Recipes::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_recipes_owner_id")
                    .table(Recipes::Table)
                    .col(Recipes::OwnerId)
                    .col(Recipes::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(ColumnDef::new(Sessions::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Sessions::HostId).uuid().not_null())
                    .col(ColumnDef::new(Sessions::RecipeId).uuid().null())
                    .col(ColumnDef::new(Sessions::Title).string_len(256).not_null())
                    .col(ColumnDef::new(Sessions::AllowGuests).boolean().not_null())
                    .col(ColumnDef::new(Sessions::State).string_len(16).not_null())
                    .col(ColumnDef::new(Sessions::Recipe).json().not_null())
                    .col(timestamp(Sessions::CreatedAt))
                    .col(nullable_timestamp(Sessions::StartedAt))
                    .col(nullable_timestamp(Sessions::EndedAt))
                    .col(timestamp(Sessions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::HostId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Sessions::Table, Sessions::RecipeId)
                            .to(Recipes::Table, Recipes::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_state_id")
                    .table(Sessions::Table)
                    .col(Sessions::State)
                    .col(Sessions::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Recipes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RefreshTokens::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}
